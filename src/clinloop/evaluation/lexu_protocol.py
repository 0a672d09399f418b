"""LEXU's evaluation protocol (LEXU §3–4): ``clinloop evaluate --protocol lexu``.

For each held-out image (the ``test_cases`` recorded in the model's
``data.json``; ``--split all`` for every case) at the model's resolution:

* image level (§3): per-image summed variance of the model (``Σ Ĥ``; for the
  plain U-Net ``Σ p(1-p)``) vs of the raters (``Σ H``) -> ``spearman`` (SR)
  and ``distance_correlation`` (DC) over images;
* pixel level: ``ncc`` between ``Ĥ`` and ``H``, mean over images;
* segmentation: ``soft_dice`` of the prediction against the soft-majority
  label ``S(M)``; ``nll`` and ``ece`` of the prediction against ``S(M)``;
  ``ged`` with the heads / members / dropout passes (binarised at 0.5) as the
  sample set and the valid raters as the reference set; all means over images;
* cost: ``forward_passes``, ``seconds_per_image`` (median wall time of one
  image's sample set, batch 1, this machine; for TinyViT models the median
  over the first three images with the feature cache bypassed, so the frozen
  encoder's time counts) and ``parameters`` (trained ones: the frozen TinyViT's
  5.7 M are not counted).

``results.json`` holds exactly those keys plus ``method``, ``protocol`` and
``n_cases``. Beside it (same stem) go

* ``.qc.json`` / ``.qc.png`` — segmentation quality control (§4.2, after Ng et
  al.): images whose Dice (prediction > 0.5 vs majority vote) is below the
  structure's threshold (§4.2: disc 0.97, cup 0.85; ours for other data: 0.7)
  are *poor*; removing the most uncertain ``q`` % of images, the curve is the
  fraction of the poor images that remain; the ideal curve removes poor images
  first; ``d_auc`` = area(curve) − area(ideal) (lower is better);
* ``.difficulty.json`` / ``.difficulty.png`` — example difficulty (§4.3):
  agreement between heads / members / passes (mean pairwise Dice) and
  image-level uncertainty under increasing Gaussian noise, blur and colour
  change, applied to the image after resizing to the network's input size. Deviation: we raise the *strength* of one distortion on every image
  (severity 0..1) rather than the *fraction* of distorted images, so each
  distortion gets its own curve.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clinloop.config_options import ProtocolOptions, opt
from clinloop.evaluation.lexu_figures import DISTORTIONS, _sibling  # noqa: F401

METHODS = ("lexu", "unet", "ensemble", "layer-ensemble", "mc-dropout")
RESULT_KEYS = (
    "method", "protocol", "n_cases", "spearman", "distance_correlation", "ncc", "soft_dice", "nll", "ece",
    "ged", "forward_passes", "seconds_per_image", "parameters",
)
POOR_DICE = {"disc": 0.97, "cup": 0.85, "gtvp": 0.65, "gtvn": 0.55}  # LEXU §4.2
DEFAULT_POOR_DICE = 0.7  # ours, for structures the paper does not cover
SHIPPED = {"riga": "lexu-riga-cup", "lidc": "lexu-lidc"}
TIMED_TINYVIT = 3  # images timed without the feature cache for TinyViT models (each costs an encoder pass)
SEVERITIES = (0.0, 0.25, 0.5, 0.75, 1.0)
# distortions outside the protocol's three and outside --intensity-augment's family: for
# checking whether a model trained on that family flags a shift it has never seen
UNSEEN_DISTORTIONS = ("pixelate",)


@dataclass(kw_only=True)
class LexuProtocolOptions(ProtocolOptions):
    """``clinloop evaluate --protocol lexu`` (and ``clinloop.evaluate(method, "lexu", data, ...)``)."""

    protocol: str = "lexu"
    structure: str | None = opt(None, help="fundus structure (RIGA, Drishti-GS1: cup/disc); default: the model's")
    task: int | None = opt(None, help="QUBIQ task number")
    split: str = opt("test", choices=["test", "all"],
                     help="test: the model's held-out cases from data.json (default); all: every case")
    poor_dice: float | None = opt(None, help="QC threshold (default: §4.2 per structure)")
    difficulty_cases: int = opt(40, help="images used by the difficulty test (0: skip)")
    no_figures: bool = opt(False)
    threads: int | None = opt(None, at_least=1)


OPTIONS = LexuProtocolOptions


# ------------------------------------------------------------ pure helpers
def qc_curve(uncertainty, poor, quantiles=None) -> dict:
    """Quality-control curve: fraction of poor images left after removing the
    ``q`` most uncertain fraction of images.

    ``uncertainty (N,)`` image-level scores, ``poor (N,)`` bool. Returns
    ``{"q", "remaining", "ideal", "d_auc", "n_poor"}``; with no poor image the
    curves are all zero and ``d_auc`` is nan. Ties in uncertainty are broken
    by image order (stable sort).
    """
    u = np.asarray(uncertainty, dtype=np.float64)
    bad = np.asarray(poor, dtype=bool)
    if u.shape != bad.shape or u.ndim != 1 or u.size == 0:
        raise ValueError(f"uncertainty and poor must be equal-length 1-D, got {u.shape} and {bad.shape}")
    q = np.linspace(0, 1, 21) if quantiles is None else np.asarray(quantiles, dtype=np.float64)
    n, n_poor = u.size, int(bad.sum())
    order = np.argsort(-u, kind="stable")
    removed_poor = np.concatenate([[0], np.cumsum(bad[order])])  # poor among the k most uncertain
    k = np.floor(q * n + 1e-9).astype(int)
    if n_poor == 0:
        z = np.zeros_like(q)
        return {"q": q.tolist(), "remaining": z.tolist(), "ideal": z.tolist(), "d_auc": float("nan"), "n_poor": 0}
    remaining = (n_poor - removed_poor[k]) / n_poor
    ideal = np.maximum(n_poor - k, 0) / n_poor
    d_auc = float(np.trapezoid(remaining, q) - np.trapezoid(ideal, q))
    return {"q": q.tolist(), "remaining": remaining.tolist(), "ideal": ideal.tolist(), "d_auc": d_auc, "n_poor": n_poor}


def distort(image: np.ndarray, kind: str, severity: float, seed: int = 0) -> np.ndarray:
    """One distortion of strength ``severity`` in [0, 1] on ``image (C, H, W)``.

    The image is mapped to [0, 1] (min–max), distorted, and mapped back:
    ``noise``: + N(0, (0.15·s)²); ``blur``: Gaussian, σ = 0.03·s·max(H, W) px;
    ``colour``: RGB: hue + 0.1·s, saturation × (1 − 0.5·s), then gamma 1 + s;
    grey: gamma 1 + 1.5·s (a brightness/contrast change alone would be undone
    by the per-image z-score). ``pixelate`` (not in the protocol's table, see
    ``UNSEEN_DISTORTIONS``): area-averaged down to ``1 / (1 + 2·s)`` of the side, then
    nearest-neighbour back up.
    """
    if kind not in DISTORTIONS + UNSEEN_DISTORTIONS:
        raise ValueError(f"unknown distortion {kind!r}; choose from {', '.join(DISTORTIONS + UNSEEN_DISTORTIONS)}")
    if not 0 <= severity <= 1:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    img = np.asarray(image, dtype=np.float32)
    lo, hi = float(img.min()), float(img.max())
    x = (img - lo) / max(hi - lo, 1e-6)
    if severity > 0:
        if kind == "noise":
            x = np.clip(x + np.random.default_rng(seed).normal(0, 0.15 * severity, x.shape), 0, 1)
        elif kind == "blur":
            from scipy.ndimage import gaussian_filter

            sigma = 0.03 * severity * max(x.shape[-2:])
            x = np.stack([gaussian_filter(c, sigma) for c in x])
        elif kind == "pixelate":
            import torch
            import torch.nn.functional as F

            t = torch.from_numpy(np.ascontiguousarray(x))[None]
            small = [max(1, round(n / (1 + 2 * severity))) for n in x.shape[-2:]]
            x = F.interpolate(F.interpolate(t, size=small, mode="area"), size=x.shape[-2:], mode="nearest")[0].numpy()
        elif x.shape[0] == 3:
            from skimage.color import hsv2rgb, rgb2hsv

            hsv = rgb2hsv(np.moveaxis(x, 0, -1))
            hsv[..., 0] = (hsv[..., 0] + 0.1 * severity) % 1.0
            hsv[..., 1] *= 1 - 0.5 * severity
            x = np.moveaxis(hsv2rgb(hsv), -1, 0) ** (1 + severity)
        else:
            x = x ** (1 + 1.5 * severity)
    return (x * (hi - lo) + lo).astype(np.float32)


def default_model(method: str, data: str, fmt: str | None, structure: str | None = None) -> str:
    """The shipped model for ``method`` on this dataset (only LEXU ships:
    RIGA cup and LIDC)."""
    if method != "lexu":
        raise ValueError(f"no shipped model for method {method!r}; pass --model MODEL_DIR (train one with clinloop train)")
    from clinloop.data import detect_format

    f = fmt or detect_format(data)
    if f not in SHIPPED:
        raise ValueError(f"no shipped LEXU model for {f!r} data ({', '.join(SHIPPED)} ship); pass --model")
    if f == "riga" and structure not in (None, "cup"):
        raise ValueError(f"the shipped RIGA model segments the cup, not {structure!r}; pass --model")
    return SHIPPED[f]


def select_cases(ds, model_dir: Path, split: str) -> list[int]:
    """Dataset indices of the model's held-out cases (``data.json``), or all."""
    if split == "all":
        return list(range(len(ds)))
    p = Path(model_dir) / "data.json"
    test = set(json.loads(p.read_text()).get("test_cases", [])) if p.is_file() else set()
    idx = [i for i, c in enumerate(ds.case_ids) if c in test]
    if not idx:
        raise ValueError(
            f"{p}: none of the model's held-out cases is in this dataset; use --split all to evaluate every case"
        )
    return idx


def evaluate_cases(predictor, samples) -> dict:
    """Per-image quantities for the protocol (at the model's resolution)."""
    import torch

    from clinloop import metrics
    from clinloop.data import fusion
    from clinloop.models.lexu.heads import pairwise_agreement
    cfg = predictor.cfg
    rows, times = [], []
    for i, s in enumerate(samples):
        x = predictor.prepare([s.image])
        if cfg.encoder != "tinyvit" or i < TIMED_TINYVIT:
            # with TinyViT, time the first images with the feature cache bypassed (encoder included)
            times.append(predictor.time_forward(x))
        r = predictor.run_batch(x)
        masks = predictor.prepare_masks(s.masks).numpy().astype(bool)
        valid = np.asarray(s.rater_valid, dtype=bool)
        H = fusion.rater_variance(masks, valid)
        soft = fusion.soft_label(masks, valid)
        mv = fusion.majority_vote(masks, valid)
        prob = r["prob"][0].numpy().astype(np.float64).clip(0, 1)
        unc = r["uncertainty"][0].numpy().astype(np.float64)
        samp = r["samples"][0].numpy() > 0.5
        rows.append({
            "case_id": s.case_id,
            "model_sum": float(unc.sum()),
            "rater_sum": float(H.sum()),
            "ncc": metrics.ncc(unc, H),
            "soft_dice": metrics.soft_dice(prob, soft),
            "dice": metrics.dice(prob > 0.5, mv),
            "nll": metrics.nll(prob, soft),
            "ece": metrics.ece(prob, soft),
            "ged": metrics.ged(samp, masks[valid]),
            "agreement": float(pairwise_agreement(torch.from_numpy(r["samples"][0:1].numpy()))[0]),
        })
    return {"rows": rows, "times": times}


def summarise(method: str, predictor, rows: list[dict], times: list[float]) -> dict:
    """``results.json`` content: exactly :data:`RESULT_KEYS`."""
    from clinloop import metrics
    from clinloop.models.lexu.network import count_parameters

    ms = [r["model_sum"] for r in rows]
    rs = [r["rater_sum"] for r in rows]
    out = {
        "method": method,
        "protocol": "lexu",
        "n_cases": len(rows),
        "spearman": metrics.spearman(ms, rs),
        "distance_correlation": metrics.distance_correlation(ms, rs),
        "ncc": float(np.mean([r["ncc"] for r in rows])),
        "soft_dice": float(np.mean([r["soft_dice"] for r in rows])),
        "nll": float(np.mean([r["nll"] for r in rows])),
        "ece": float(np.mean([r["ece"] for r in rows])),
        "ged": float(np.mean([r["ged"] for r in rows])),
        "forward_passes": predictor.forward_passes,
        "seconds_per_image": float(np.median(times)),
        "parameters": count_parameters(predictor.network),
    }
    assert tuple(out) == RESULT_KEYS
    return out


def difficulty_inputs(cfg, samples, seed: int = 0, kinds=DISTORTIONS):
    """The difficulty test's network inputs: yields ``(distortion, severity, [x_i])`` for each
    of ``kinds`` (default the protocol's three), one prepared ``(1, C, S, S)`` input per
    sample, each image cropped and resized to the
    network's resolution, then distorted there (distortions applied at 512² would be mostly
    averaged away by the anti-aliased downsampling to ``cfg.size``²), noise seeded ``seed + i``."""
    from clinloop.models.lexu.model import crop_box, prepare_images

    import torch
    import torch.nn.functional as F

    small = []
    for s in samples:
        y0, y1, x0, x1 = crop_box(s.image.shape[-2:], cfg.crop)
        t = torch.from_numpy(np.ascontiguousarray(s.image[:, y0:y1, x0:x1], dtype=np.float32))[None]
        small.append(F.interpolate(t, size=(cfg.size, cfg.size), mode="bilinear", antialias=True,
                                   align_corners=False)[0].numpy())
    for kind in kinds:
        for sev in SEVERITIES:
            yield kind, sev, [prepare_images([distort(im, kind, sev, seed + i)], cfg.size, cfg.in_channels,
                                             cfg.normalisation) for i, im in enumerate(small)]


def difficulty_test(predictor, samples, seed: int = 0) -> dict:
    """Mean agreement and image-level uncertainty per distortion and severity."""
    from clinloop.models.lexu.heads import pairwise_agreement

    table = {}
    for kind, sev, xs in difficulty_inputs(predictor.cfg, samples, seed):
        runs = [predictor.run_batch(x) for x in xs]
        row = table.setdefault(kind, {"severity": list(SEVERITIES), "agreement": [], "image_uncertainty": []})
        row["agreement"].append(float(np.mean([float(pairwise_agreement(r["samples"])[0]) for r in runs])))
        row["image_uncertainty"].append(float(np.mean([float(r["image_uncertainty"][0]) for r in runs])))
    return {"n_cases": len(samples), "distortions": table}


def run_protocol(args: LexuProtocolOptions, verbose: bool = False) -> dict:
    """Run the protocol; returns the ``results.json`` content. With ``out`` it is
    written there, with the QC / difficulty JSON and figures beside it."""
    import torch

    from clinloop.atomic import atomic_write_text
    from clinloop.data import load_dataset
    from clinloop.models.lexu.model import load_lexu
    from clinloop.models.registry import resolve_model_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # MC-dropout masks: reproducible results
    model_dir = resolve_model_dir(args.model or default_model(args.method, args.data, args.format, args.structure))
    predictor = load_lexu(model_dir)
    if predictor.cfg.method != args.method:
        raise ValueError(f"{model_dir}: model is {predictor.cfg.method!r}, not --method {args.method!r}")
    opts = {}
    structure = args.structure or predictor.cfg.structure
    fmt = args.format
    from clinloop.data import detect_format, reader_accepts

    if structure and reader_accepts(fmt or detect_format(args.data), "structure"):
        opts["structure"] = structure
    if args.task is not None:
        opts["task"] = args.task
    ds = load_dataset(args.data, format=fmt, **opts)
    idx = select_cases(ds, model_dir, args.split)
    if args.limit is not None:
        idx = idx[: args.limit]
    samples = [s for s in (ds[i] for i in idx) if s.n_raters and s.rater_valid.any()]
    if not samples:
        raise ValueError(f"{args.data}: no selected case has a valid rater mask")
    ev = evaluate_cases(predictor, samples)
    res = summarise(args.method, predictor, ev["rows"], ev["times"])
    out = Path(args.out) if args.out is not None else None
    if out is not None:
        atomic_write_text(out, json.dumps(res, indent=2) + "\n")

    key = (structure or getattr(samples[0], "structure", None) or "").lower()
    thr = args.poor_dice if args.poor_dice is not None else POOR_DICE.get(key, DEFAULT_POOR_DICE)
    dice = np.array([r["dice"] for r in ev["rows"]])
    qc = qc_curve([r["model_sum"] for r in ev["rows"]], dice < thr)
    qc.update({"threshold": thr, "n_cases": len(dice), "method": args.method, "cases": ev["rows"]})
    if out is None:  # nothing to write: the QC curve and difficulty test only go beside results.json
        return res
    atomic_write_text(_sibling(out, ".qc.json"), json.dumps(qc, indent=1) + "\n")
    if args.difficulty_cases:
        dt = difficulty_test(predictor, samples[: args.difficulty_cases], args.seed)
        dt["method"] = args.method
        atomic_write_text(_sibling(out, ".difficulty.json"), json.dumps(dt, indent=1) + "\n")
    if not args.no_figures:
        from clinloop.evaluation.lexu_figures import plot_difficulty, plot_qc

        plot_qc(qc, args.method, _sibling(out, ".qc.png"))
        if args.difficulty_cases:
            plot_difficulty(dt, args.method, _sibling(out, ".difficulty.png"))
    if verbose:
        print(json.dumps(res, indent=2))
        print(f"QC d-AUC {qc['d_auc']:.4f} ({qc['n_poor']} poor of {len(dice)}, Dice < {thr})", file=sys.stderr)
    return res


def plot_comparison(results, path) -> None:
    """:func:`clinloop.evaluation.lexu_figures.plot_comparison` (kept here for callers)."""
    from clinloop.evaluation.lexu_figures import plot_comparison as plot

    plot(results, path)
