"""Zoom for corrective clicks (``SPAConfig.zoom_in``, :mod:`clinloop.models.spa.zoom`): the
network alone (``--model-only``), with and without the zoom, through the ``clicks`` protocol.

1. **Selection, LIDC training slices** (40 slices of the patients the model trained on, one per
   nodule, 5 clicks): the zoom off and the settings in ``SETTINGS``. The rule, fixed before the
   held-back run: the highest honoured share among the settings whose Dice after the 5th click is
   not below the zoom off's.
2. **Held back**: the chosen setting against the zoom off on the 40 held-back LIDC slices (the
   workstation issue's target) and on the held-back cases of the other 2-D sources of the model's
   mix (``clinloop.training.spa_mix.GENERAL``; their spa-protocol split), with ``ALWAYS`` (the
   zoom on every corrective click, as first shipped) beside them.

Each run is written to ``--out`` as ``<split>-<source>-<setting>.json`` and reused when present.

    python benchmarks/spa_zoom_clicks.py --model spa-general --out runs/zoom --threads 1
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import clinloop

OFF = {"zoom_in": 0.0}
SETTINGS = {  # name -> config values: mode, expansion, least side (share of the image); zoom only when missed
    f"{mode}-{e:g}-{m:g}": {"zoom_in": e, "zoom_min": m, "zoom_mode": mode, "zoom_when": "missed"}
    for mode, e, m in (("mean", 2.0, 0.25), ("mean", 2.0, 0.35), ("mean", 2.0, 0.5), ("mean", 3.0, 0.25),
                       ("crop", 2.0, 0.25), ("crop", 2.0, 0.35))
}
ALWAYS = {"zoom_in": 2.0, "zoom_min": 0.35, "zoom_mode": "mean", "zoom_when": "always"}  # every corrective click


def run(out: Path, root: Path, model: str, split: str, source, name: str, zoom: dict, threads: int) -> dict:
    f = out / f"{split}-{source.name}-{name}.json"
    if f.exists():
        return json.loads(f.read_text())
    lidc = source.name == "lidc"
    kw = {"structure": source.options["structure"]} if "structure" in source.options else {}
    return clinloop.evaluate("spa", "clicks", str(root / source.folder), model=model, split=split,
                             held_out_fraction=source.held_out, per_nodule=source.per_group,
                             limit=40, clicks=5, threads=threads, model_only=True, out=str(f), **zoom, **kw)


def row(name: str, r: dict) -> str:
    d = " → ".join(f"{v:.3f}" for v in r["dice_per_click"])
    return (f"| {name} | {r['n_cases']} | {r['n_corrective']} | {100 * r['honoured_rate']:.1f} % | {d} | "
            f"{r['seconds_per_click']:.2f} |")


def main() -> None:
    from clinloop.training.spa_mix import GENERAL

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="spa-general")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--out", default="runs/zoom")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sources", nargs="*", default=None, help="held-back 2-D sources (default: all of the mix)")
    a = ap.parse_args()
    out, root = Path(a.out), Path(a.data_root)
    out.mkdir(parents=True, exist_ok=True)
    sources = {s.name: s for s in GENERAL if s.name not in ("brats", "left_atrium")}
    head = "| setting | cases | corrective clicks | honoured (network) | Dice after clicks 1 → 5 | s per click |\n" \
           "|---|---|---|---|---|---|"
    sel = {"off": run(out, root, a.model, "train", sources["lidc"], "off", OFF, a.threads)}
    for name, z in SETTINGS.items():
        sel[name] = run(out, root, a.model, "train", sources["lidc"], name, z, a.threads)
    print(f"## Selection: {a.model}, LIDC training slices\n\n{head}")
    for name, r in sel.items():
        print(row(name, r))
    floor = sel["off"]["dice_per_click"][-1]
    ok = [n for n in SETTINGS if sel[n]["dice_per_click"][-1] >= floor]
    if not ok:
        print("\nno setting keeps the Dice after the 5th click; nothing to hold back")
        return
    best = max(ok, key=lambda n: sel[n]["honoured_rate"])
    print(f"\nchosen: {best} ({SETTINGS[best]})\n\n## Held back\n\n{head}")
    for src in a.sources or list(sources):
        for name, z in (("off", OFF), (best, SETTINGS[best]), ("always-mean-2-0.35", ALWAYS)):
            print(row(f"{src}: {name}", run(out, root, a.model, "val", sources[src], name, z, a.threads)))


if __name__ == "__main__":
    main()
