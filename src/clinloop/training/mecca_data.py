"""MECCA training data: the fused target, crops around it and the patient split
(:func:`clinloop.data.splits.split_patients`), for :mod:`clinloop.training.mecca`
and :mod:`clinloop.evaluation.mecca_protocol`."""
from __future__ import annotations

from typing import Any

import numpy as np

from clinloop.models.mecca.volumes import crop_around  # noqa: F401 (re-exported; sessions crop a region of interest with it too)


def fuse_label(sample, fusion: str, seed: int = 0) -> np.ndarray:
    """The target: ``clinloop.data.fusion.fuse(fusion, ...)`` of the sample's valid raters → bool."""
    from clinloop.data.fusion import fuse

    return np.asarray(fuse(fusion, sample.masks, rater_valid=sample.rater_valid, seed=seed)) > 0.5


def prepare(sample, fusion: str, size: int | None, seed: int = 0):
    """``(image (C, *s) float32, label (*s) bool)`` of one sample, cropped around the label."""
    from clinloop.models.mecca.model import normalise

    if not sample.rater_valid.any():
        raise ValueError(f"case {sample.case_id}: no valid rater masks")
    label = fuse_label(sample, fusion, seed)
    img = sample.image
    if size is not None:
        pts = np.argwhere(label)
        centre = pts.mean(0) if len(pts) else np.array(label.shape) / 2.0 - 0.5
        img = crop_around(img, centre, size)
        label = crop_around(label, centre, size)
    return normalise(img)[None], label


def prepare_volume(sample, fusion: str, zoom: int = 1, norm: str = "image", crop=None, seed: int = 0):
    """``(image (1, *coarse) float32, label (*coarse) bool)`` on the model's working grid:
    normalised at full resolution (``norm``, :func:`clinloop.models.mecca.volumes.normalise`),
    average-pooled by ``zoom`` (label: majority per block), then cropped to ``crop``
    (one size per axis, around the label's centre, padded with the background value)
    when given. :func:`prepare` is the older path of the LIDC models (crop, then z-score)."""
    from clinloop.models.mecca.volumes import normalise, zoom_image, zoom_label

    if not sample.rater_valid.any():
        raise ValueError(f"case {sample.case_id}: no valid rater masks")
    label = zoom_label(fuse_label(sample, fusion, seed), zoom)
    img = zoom_image(normalise(sample.image, norm), zoom)
    if crop:
        pts = np.argwhere(label)
        centre = pts.mean(0) if len(pts) else np.array(label.shape) / 2.0 - 0.5
        img = crop_around(img, centre, crop, fill=float(img.min()))
        label = crop_around(label, centre, crop)
    return img[None], label


def parse_crop(text: str) -> tuple[int, ...]:
    """``"D,H,W"`` → ``(D, H, W)``; ``""`` → ``()``."""
    try:
        return tuple(int(v) for v in str(text).split(",")) if str(text).strip() else ()
    except ValueError as e:
        raise ValueError(f"--crop wants comma-separated integers like 40,64,64, got {text!r}") from e


def split_patients(dataset, val_fraction: float, seed: int):
    """Train/held-back case indices by patient: :func:`clinloop.data.splits.split_patients`
    (rule ``"cases"``; ``val_fraction`` = the held-out share)."""
    from clinloop.data.splits import split_patients as split

    return split(dataset.patient_ids, val_fraction, seed, rule="cases")


def split_training_patients(dataset, train_idx, fraction: float, seed: int):
    """Split the training cases ``train_idx`` by patient into ``(fit, tune)``:
    :func:`clinloop.data.splits.split_patients` with rule ``"fill"`` (whole training
    patients go to ``tune`` until it holds about ``fraction`` of the cases; seed
    ``seed + 7919``). Settings are chosen on ``tune``, never on the held-back
    patients of :func:`split_patients`."""
    from clinloop.data.splits import split_patients as split

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"tune fraction must lie in (0, 1), got {fraction}")
    return split(dataset.patient_ids, fraction, seed + 7919, rule="fill", indices=train_idx)


def load_training_data(args) -> dict[str, Any]:
    from clinloop.data import load_dataset

    opts = {"volumes": True} if args.ndim == 3 and (args.format or "").lower() in ("", "lidc") and "lidc" in str(args.data).lower() else {}
    ds = load_dataset(args.data, format=args.format, **opts)
    tr, va = split_patients(ds, args.held_out_fraction, args.seed)
    train_patients = sorted({ds.patient_ids[i] for i in tr})  # all of them stay out of held-back evaluation
    tune = float(args.tune_fraction or 0.0)
    if tune > 0.0:
        tr, va = split_training_patients(ds, tr, tune, args.seed)
    rng = np.random.default_rng(args.seed)
    tr = list(rng.permutation(tr))
    limits = {"train": args.max_cases, "val": args.val_cases}
    cases = {}
    for name, idx in (("train", tr), ("val", va)):
        imgs, labs, keep = [], [], []
        for i in idx:
            if limits[name] is not None and len(keep) >= limits[name]:
                break
            s = ds[int(i)]
            if s.spatial_ndim != args.ndim or not s.rater_valid.any():
                continue
            if getattr(args, "zoom", 1) > 1 or getattr(args, "norm", "image") != "image" or getattr(args, "crop", ""):
                crop = parse_crop(args.crop) or ((args.size,) * args.ndim if args.size else None)
                jitter = int(getattr(args, "crop_jitter", 0) or 0)
                if jitter and name == "train":  # cut at random offsets while training (random_subcrop)
                    if not crop:
                        raise ValueError("--crop-jitter needs --crop")
                    crop = tuple(c + 2 * jitter for c in crop)
                x, y = prepare_volume(s, args.fusion, args.zoom, args.norm, crop, args.seed)
            else:
                x, y = prepare(s, args.fusion, args.size, args.seed)
            if not y.any():  # nothing to segment: no boundary to click on
                continue
            imgs.append(x)
            labs.append(y)
            keep.append(int(i))
        shape = (0, 1) + (args.size,) * args.ndim
        cases[name] = (np.stack(imgs) if imgs else np.zeros(shape, np.float32),
                       np.stack(labs) if labs else np.zeros((0,) + shape[2:], bool), keep)
    if len(cases["train"][2]) == 0:
        raise ValueError(f"{args.data}: no usable {args.ndim}-D training cases with a non-empty {args.fusion} label")
    return {"dataset": ds, "cases": cases, "train_patients": train_patients,
            "val_patients": sorted({ds.patient_ids[i] for i in va})}


# ---------------------------------------------------------------- rollouts
