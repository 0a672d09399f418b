"""The MECCA evaluation protocol (mecca.txt §5.1–5.3).

``clinloop evaluate --method {mecca,mecca-no-confidence,interactive-cnn,unet} --protocol mecca
--data PATH --steps 5 [--limit N] [--seed S] [--model DIR] [--fusion majority] --out results.json``

For each held-back case (patients the model was *not* trained on, read from its
``data.json``; cases whose fused label is empty are skipped, there is nothing to
click on), a simulated user starts from ``p^(0) = 0.5`` and, before each of the
``--steps`` refinement steps, clicks up to ``hint_points`` wrongly predicted
boundary points of the current prediction (§5.1: "randomly selecting the wrong
segmentation points on the edges with the ground truth"). After every step we
score Dice and ASSD (physical units via the sample's spacing; a step whose
prediction is empty gets the image diagonal as its ASSD instead of ∞, so means
stay finite) and count *interactive misunderstanding* events (Definition 1:
agents whose probability moved against their label, see
:func:`clinloop.models.mecca.environment.misunderstanding`).

``results.json`` keys: ``method``, ``protocol``, ``n_cases``, ``dice_per_step``,
``assd_per_step``, ``seconds_per_step`` (model time of one step, mean over
cases) and ``misunderstanding_per_step`` (mean count per case).

``unet`` is the non-interactive CNN (model folders with method
``mecca-unet``). Without ``--model`` the shipped model of the method is used.

The semi-supervised table (§5.3, Table 2) is produced by
:func:`semisupervised_table` (``python -m clinloop.evaluation.mecca_protocol
semisup --data PATH --out DIR``): MECCA trained with 1/8, 1/4, 1/2 and 1/1 of
the training cases labeled, each evaluated with this protocol; JSON + figure.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("mecca", "mecca-no-confidence", "interactive-cnn", "unet")
MODEL_METHOD = {"mecca": "mecca", "mecca-no-confidence": "mecca-no-confidence",
                "interactive-cnn": "interactive-cnn", "unet": "mecca-unet"}
SHIPPED = {"mecca": "mecca-lidc", "mecca-no-confidence": "mecca-no-confidence-lidc",
           "interactive-cnn": "interactive-cnn-lidc", "unet": "mecca-unet-lidc"}
RESULT_KEYS = ("method", "protocol", "n_cases", "dice_per_step", "assd_per_step", "seconds_per_step",
               "misunderstanding_per_step")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=5, help="refinement steps (interactions) per case")
    p.add_argument("--fusion", default="majority", help="rater fusion giving the target (clinloop.data.fusion)")
    p.add_argument("--size", type=int, default=None,
                   help="crop size around the label (default: the model's training size; 0 = whole image)")
    p.add_argument("--hint-points", type=int, default=None, help="clicks per step (default: the model's)")
    p.add_argument("--label", default=None,
                   help="a mask file for a single image/volume given as --data (e.g. the BraTS sample's label)")
    p.add_argument("--all-patients", action="store_true",
                   help="do not hold back: also evaluate patients the model was trained on")


def _load(method: str, model_dir: str | None):
    from clinloop.models.mecca.model import load_mecca
    from clinloop.models.registry import resolve_model_dir

    if model_dir is None:
        try:
            d = resolve_model_dir(SHIPPED[method])
        except ValueError as e:
            raise ValueError(f"no shipped model for {method!r} ({SHIPPED[method]}); pass --model DIR "
                             f"(train one with `clinloop train --method {MODEL_METHOD[method]} ...`)") from e
    else:
        d = resolve_model_dir(model_dir)
    model = load_mecca(d)
    if model.cfg.method != MODEL_METHOD[method]:
        raise ValueError(f"{d}: holds a {model.cfg.method!r} model, not {MODEL_METHOD[method]!r} (--method {method})")
    return model, d


def evaluate_cases(model, cases, steps: int, seed: int, hint_points: int | None = None) -> dict[str, Any]:
    """Score ``cases`` = iterable of ``(image (C,*s), label (*s) bool, spacing)``."""
    from clinloop.metrics import assd, dice
    from clinloop.models.mecca.model import simulate

    rng = np.random.default_rng(seed)
    D, A, S, M = [], [], [], []
    for image, label, spacing in cases:
        out = simulate(model, image, label, steps, rng, hint_points)
        diag = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(label.shape, spacing))))
        d_row, a_row = [], []
        for prob in out["probabilities"]:
            m = prob > 0.5
            d_row.append(dice(m, label))
            a = assd(m, label, spacing)
            a_row.append(a if math.isfinite(a) else diag)
        D.append(d_row)
        A.append(a_row)
        S.append(out["seconds"])
        M.append(out["misunderstanding"])
    n = len(D)
    mean = (lambda x: np.asarray(x, dtype=np.float64).mean(0).round(4).tolist()) if n else (lambda x: [])
    return {"n_cases": n, "dice_per_step": mean(D), "assd_per_step": mean(A), "seconds_per_step": mean(S),
            "misunderstanding_per_step": mean(M)}


def iter_cases(dataset, model, fusion: str, size: int | None, limit: int | None, seed: int, hold_back: bool = True):
    """Held-back, non-empty cases of ``dataset`` prepared like training (crop + fusion)."""
    from clinloop.training.mecca import prepare

    train_patients = set(model.data.get("train_patients", [])) if hold_back else set()
    order = np.random.default_rng(seed).permutation(len(dataset))
    n = 0
    for i in order:
        if limit is not None and n >= limit:
            return
        if dataset.patient_ids[int(i)] in train_patients:
            continue
        s = dataset[int(i)]
        if s.spatial_ndim != model.cfg.ndim or not s.rater_valid.any():
            continue
        x, y = prepare(s, fusion, size or None, seed)
        if not y.any():
            continue
        n += 1
        yield x, y, tuple(s.spacing)


def open_dataset(path, fmt: str | None, ndim: int, label: str | None = None):
    """The dataset to evaluate: any layout (LIDC as nodule volumes for 3-D models), or
    one image/volume file plus ``label`` (a mask file read with ``clinloop.data.io.read_mask``)."""
    from dataclasses import replace

    from clinloop.data import ListDataset, detect_format, load_dataset

    if label is not None:
        from clinloop.data.io import read_mask

        s = load_dataset(path, format=fmt or "single")[0]
        m = read_mask(label, like_shape=s.spatial_shape)
        s = replace(s, masks=np.asarray(m, bool)[None], rater_valid=np.ones(1, bool), rater_ids=["label"])
        return ListDataset([s], name=str(path))
    name = fmt or detect_format(path)
    opts = {"volumes": True} if (name == "lidc" and ndim == 3) else {}
    return load_dataset(path, format=name, **opts)


def run(args) -> int:
    from clinloop.atomic import atomic_write_text

    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    model, _ = _load(args.method, args.model)
    ds = open_dataset(args.data, args.format, model.cfg.ndim, getattr(args, "label", None))
    size = model.cfg.size if args.size is None else args.size
    cases = iter_cases(ds, model, args.fusion, size, args.limit, args.seed, hold_back=not args.all_patients)
    res = evaluate_cases(model, cases, args.steps, args.seed, args.hint_points)
    if res["n_cases"] == 0:
        raise ValueError(f"{args.data}: no held-back {model.cfg.ndim}-D case with a non-empty {args.fusion} label")
    out = {"method": args.method, "protocol": "mecca", **res}
    out = {k: out[k] for k in RESULT_KEYS}
    atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))
    return 0


# ---------------------------------------------------------------- semi-supervised table
def semisupervised_table(data: str, out_dir: str, fractions=(0.125, 0.25, 0.5, 1.0), iterations: int = 200,
                         max_minutes: float = 10.0, limit: int = 100, steps: int = 5, seed: int = 0,
                         extra_train_args: list[str] | None = None) -> dict[str, Any]:
    """Table 2 / Table 3 of mecca.txt at our scale: train MECCA with each labeled
    fraction (the rest unlabeled, Eq. 6), evaluate each with this protocol; writes
    ``semisupervised.json`` and ``semisupervised.png`` into ``out_dir``."""
    from clinloop.atomic import atomic_write_text
    from clinloop.cli.train import run as train_run

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for f in fractions:
        mdir = out / f"mecca-labeled-{f:g}"
        if not (mdir / "config.json").is_file():
            ns = argparse.Namespace(method="mecca", help=False)
            train_run(ns, ["--data", data, "--out", str(mdir), "--seed", str(seed), "--labeled-fraction", str(f),
                           "--iterations", str(iterations), "--max-minutes", str(max_minutes),
                           *(extra_train_args or [])])
        ev = argparse.Namespace(method="mecca", protocol="mecca", data=data, format=None, model=str(mdir),
                                limit=limit, seed=seed, out=str(mdir / "results.json"), steps=steps,
                                fusion="majority", size=None, hint_points=None, all_patients=False, label=None)
        if not (mdir / "results.json").is_file():  # fractions may be trained/evaluated by parallel calls
            run(ev)
        res = json.loads((mdir / "results.json").read_text())
        rows.append({"labeled_fraction": f, **{k: res[k] for k in ("n_cases", "dice_per_step", "assd_per_step",
                                                                 "misunderstanding_per_step")}})
    table = {"protocol": "mecca", "method": "mecca", "steps": steps, "rows": rows}
    atomic_write_text(out / "semisupervised.json", json.dumps(table, indent=2) + "\n")
    plot_semisupervised(table, out / "semisupervised.png")
    return table


def plot_semisupervised(table: dict[str, Any], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for r in table["rows"]:
        d = r["dice_per_step"]
        ax.plot(range(1, len(d) + 1), d, marker="o", label=f"{r['labeled_fraction']:g} labeled")
    ax.set_xlabel("interaction step")
    ax.set_ylabel("Dice")
    ax.set_title("MECCA, semi-supervised (held-back cases)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m clinloop.evaluation.mecca_protocol")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("semisup", help="semi-supervised table (1/8, 1/4, 1/2, 1/1 labeled)")
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--iterations", type=int, default=200)
    s.add_argument("--max-minutes", type=float, default=10.0)
    s.add_argument("--limit", type=int, default=100)
    s.add_argument("--steps", type=int, default=5)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--fractions", default="0.125,0.25,0.5,1")
    a, extra = p.parse_known_args(argv)
    fr = tuple(float(x) for x in a.fractions.split(","))
    t = semisupervised_table(a.data, a.out, fr, a.iterations, a.max_minutes, a.limit, a.steps, a.seed, extra)
    print(json.dumps(t, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
