"""A general SPA model against a reference model, per dataset of its training mix, on the
patients it held back (issue 13: "Dice@1/@3 per dataset next to the dataset-specific model";
issue 17: corrective clicks honoured on held-back LIDC).

For each source of ``clinloop.training.spa_mix.GENERAL``:

* 2-D sources: ``clinloop.evaluate(method, "spa", ...)`` on the val split of the source's
  seeded patient split (the held-out share it was trained with), first ``--limit`` cases
  (LIDC: one middle slice per nodule, 25 cases, 6 iterations: the LIDC protocol of spa-lidc);
* 3-D sources: ``clinloop.evaluate(method, "spa-3d", ...)`` on the volumes whose patients the
  model did not train on (its ``data.json``), one click then ``--iterations-3d`` choices;
* LIDC also through the ``clicks`` protocol (40 held-back slices, 5 clicks).

Each run is a JSON file ``<out>/<model>/<source>.json`` (and ``_cases.csv``); a finished file
is reused, so the script resumes. Prints one table.

    PYTHONPATH=src python benchmarks/spa_general_report.py --models spa-general spa-lidc --out runs/general
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import clinloop
from clinloop.training.spa_mix import GENERAL


def _run(out: Path, fn, **kw) -> dict:
    if out.is_file():
        return json.loads(out.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    return fn(out=str(out), **kw)


def evaluate_model(model: str, root: Path, out: Path, limit: int, limit_3d: int | None, iterations_3d: int,
                   threads: int, sources: list[str] | None, clicks: bool = True,
                   held_back_of: str | None = None, options_3d: dict | None = None) -> dict[str, dict]:
    """The figures of one model per source (and ``lidc_clicks``); 3-D volumes are those
    ``held_back_of`` (default: ``model``) did not train on; ``options_3d``: further spa-3d
    options (``no_baseline``, ``embedding_cache``)."""
    res = {}
    for src in GENERAL:
        if sources and src.name not in sources:
            continue
        data = root / src.folder
        three_d = src.name in ("brats", "left_atrium")
        f = out / model / f"{src.name}.json"
        if three_d:
            res[src.name] = _run(f, lambda **k: clinloop.evaluate("spa", "spa-3d", str(data), model=model, **k),
                                 limit=limit_3d, iterations=iterations_3d, threads=threads,
                                 held_back_of=held_back_of, **(options_3d or {}))
        else:
            lidc = src.name == "lidc"
            res[src.name] = _run(f, lambda **k: clinloop.evaluate("spa", "spa", str(data), model=model, **k),
                                 split="val", held_out_fraction=src.held_out, limit=25 if lidc else limit,
                                 iterations=6 if lidc else 3, per_nodule=src.per_group, threads=threads,
                                 **({"structure": src.options["structure"]} if "structure" in src.options else {}))
    if clicks and (not sources or "lidc" in sources):
        res["lidc_clicks"] = _run(out / model / "lidc_clicks.json",
                                  lambda **k: clinloop.evaluate("spa", "clicks", str(root / "lidc"), model=model, **k),
                                  split="val", per_nodule=1, limit=40, clicks=5, threads=threads)
    return res


def table(results: dict[str, dict[str, dict]]) -> str:
    models = list(results)
    lines = ["| source (held-back cases) | " + " | ".join(f"{m}: Dice@1 / @3" for m in models) + " |",
             "|---|" + "---|" * len(models)]
    names = list(dict.fromkeys(k for r in results.values() for k in r if k != "lidc_clicks"))
    for name in names:
        cells = []
        n = None
        for m in models:
            r = results[m].get(name)
            if r is None:
                cells.append("—")
                continue
            d = r["dice_per_iteration"]
            n = r["n_cases"]
            cells.append(f"{d[0]:.3f} / {d[min(2, len(d) - 1)]:.3f}")
        lines.append(f"| {name} ({n}) | " + " | ".join(cells) + " |")
    for m in models:
        c = results[m].get("lidc_clicks")
        if c:
            lines.append(f"\n{m}, LIDC corrective clicks ({c['n_cases']} slices, {c['n_corrective']} corrective clicks): "
                         f"honoured {c['honoured_rate']:.3f}, Dice per click "
                         + " / ".join(f"{x:.3f}" for x in c["dice_per_click"]))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["spa-general", "spa-lidc"])
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--out", default="runs/general")
    ap.add_argument("--limit", type=int, default=25, help="held-back cases per 2-D source (LIDC: 25)")
    ap.add_argument("--limit-3d", type=int, default=None, help="held-back volumes per 3-D source (default: all)")
    ap.add_argument("--iterations-3d", type=int, default=5)
    ap.add_argument("--sources", nargs="*", default=None, help="only these sources (names in spa_mix.GENERAL)")
    ap.add_argument("--no-clicks", action="store_true", help="skip the clicks protocol on LIDC")
    ap.add_argument("--no-baseline", action="store_true", help="spa-3d: skip the slice-by-slice baseline")
    ap.add_argument("--embedding-cache", action="store_true",
                    help="spa-3d: use the on-disk embedding cache (the seconds then exclude encoding)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-orthogonal", action="store_true",
                    help="spa-3d: the propagation alone (the 3-D figures measured before 2026-12-04)")
    a = ap.parse_args()
    opts_3d = {"no_baseline": a.no_baseline, "embedding_cache": a.embedding_cache, "no_orthogonal": a.no_orthogonal}
    # every model on the volumes the first model held back
    res = {m: evaluate_model(m, Path(a.data_root), Path(a.out), a.limit, a.limit_3d, a.iterations_3d, a.threads,
                             a.sources, clicks=not a.no_clicks, held_back_of=a.models[0], options_3d=opts_3d)
           for m in a.models}
    print(table(res))


if __name__ == "__main__":
    main()
