"""MECCA protocol core (mecca.txt §5.1–5.3): the held-back cases, one model's
scores on them, and :func:`evaluate_model` (``clinloop evaluate --protocol mecca``
in its default ``--mode evaluate``). See :mod:`clinloop.evaluation.mecca_protocol`."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

METHODS = ("mecca", "mecca-no-confidence", "interactive-cnn", "unet", "pnet")
MODEL_METHOD = {"mecca": "mecca", "mecca-no-confidence": "mecca-no-confidence",
                "interactive-cnn": "interactive-cnn", "unet": "mecca-unet", "pnet": "mecca-unet"}
SHIPPED = {"mecca": "mecca-lidc", "mecca-no-confidence": "mecca-no-confidence-lidc",
           "interactive-cnn": "interactive-cnn-lidc", "unet": "mecca-unet-lidc"}
SHIPPED_3D = {"mecca": "mecca-lidc3d", "mecca-no-confidence": "mecca-no-confidence-lidc3d",
              "interactive-cnn": "interactive-cnn-lidc3d"}
# shipped volume models per task (folder names; trained by benchmarks/mecca_train_volumes.py)
TASK_PREFIX = {"mecca": "mecca", "mecca-no-confidence": "mecca-no-confidence",
               "interactive-cnn": "interactive-cnn", "unet": "pnet", "pnet": "pnet"}
RESULT_KEYS = ("method", "protocol", "n_cases", "dice_per_step", "assd_per_step", "seconds_per_step",
               "misunderstanding_per_step", "flips_per_step", "click_reach")


def task_of(data, fmt: str | None = None) -> str | None:
    """``"brats"`` for BraTS case folders, ``"atrium"`` for a Decathlon folder, else None
    (the task whose shipped ``<method>-<task>`` models :func:`shipped_name` picks)."""
    from clinloop.data import detect_format
    from clinloop.errors import DataError

    try:
        name = fmt or detect_format(data)
    except DataError:  # a missing path or an unknown layout: no task models
        return None
    return {"brats": "brats", "decathlon": "atrium"}.get(name)


def shipped_name(method: str, ndim: int, task: str | None = None) -> str:
    """The shipped model folder name of ``method`` for ``ndim``-D data (``task``:
    ``"brats"`` / ``"atrium"`` → ``<method>-<task>``, e.g. ``pnet-brats``)."""
    if task is not None:
        return f"{TASK_PREFIX[method]}-{task}"
    table = SHIPPED if ndim == 2 else SHIPPED_3D
    if method not in table:
        raise ValueError(f"no shipped {ndim}-D model for {method!r} (shipped: {', '.join(sorted(table))}); "
                         f"pass --model DIR (train one with `clinloop train --method {MODEL_METHOD[method]} "
                         f"--ndim {ndim} ...`)")
    return table[method]


def _load(method: str, model_dir: str | None, ndim: int = 2, task: str | None = None):
    from clinloop.models.mecca.model import load_mecca
    from clinloop.models.registry import resolve_model_dir

    if model_dir is None:
        name = shipped_name(method, ndim, task)
        try:
            d = resolve_model_dir(name)
        except ValueError as e:
            raise ValueError(f"no shipped model for {method!r} ({name}); pass --model DIR "
                             f"(train one with `clinloop train --method {MODEL_METHOD[method]} ...`)") from e
    else:
        d = resolve_model_dir(model_dir)
    model = load_mecca(d)
    if model.cfg.method != MODEL_METHOD[method]:
        raise ValueError(f"{d}: holds a {model.cfg.method!r} model, not {MODEL_METHOD[method]!r} (--method {method})")
    if model_dir is not None and model.cfg.ndim != ndim:
        raise ValueError(f"{d}: holds a {model.cfg.ndim}-D model but the data are {ndim}-D (--ndim)")
    return model, d


def _case_arrays(sample, model, fusion: str, size: int | None, seed: int):
    """``(image, label)`` of one case for :func:`clinloop.models.mecca.model.simulate`:
    LIDC-style models (``zoom == 1``, ``norm == "image"``) get the crop of
    :func:`clinloop.training.mecca_data.prepare`; volume models the raw, whole image
    (they normalise and zoom it themselves; ``size``, when given, crops
    ``size · zoom`` input voxels around the label)."""
    from clinloop.training.mecca_data import crop_around, fuse_label, prepare

    if model.cfg.zoom == 1 and model.cfg.norm == "image":
        return prepare(sample, fusion, size or None, seed)
    label = fuse_label(sample, fusion, seed)
    image = np.asarray(sample.image, np.float32)
    if size:
        pts = np.argwhere(label)
        centre = pts.mean(0) if len(pts) else np.array(label.shape) / 2.0 - 0.5
        n = int(size) * model.cfg.zoom
        image, label = crop_around(image, centre, n), crop_around(label, centre, n)
    return image, label


def evaluate_cases(model, cases, steps: int, seed: int, hint_points: int | None = None,
                   per_case: bool = False, on_case=None) -> dict[str, Any]:
    """Score ``cases`` = iterable of ``(image (C,*s), label (*s) bool, spacing[, case_id])``;
    ``per_case`` adds ``per_case``: one ``{case_id, dice, misunderstanding}`` per case.
    ``on_case(case_id, label, spacing, masks)``, when given, sees each case's thresholded
    masks (one per step) and may return a value, listed in order as ``on_case``."""
    from clinloop.metrics import assd, dice
    from clinloop.models.mecca.model import simulate

    rng = np.random.default_rng(seed)
    D, A, S, M, F, ids, hooked = [], [], [], [], [], [], []
    for k, case in enumerate(cases):
        image, label, spacing = case[:3]
        ids.append(str(case[3]) if len(case) > 3 else str(k))
        out = simulate(model, image, label, steps, rng, hint_points)
        diag = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(label.shape, spacing))))
        masks = [prob > 0.5 for prob in out["probabilities"]]
        if on_case is not None:
            hooked.append(on_case(ids[-1], label, spacing, masks))
        d_row, a_row = [], []
        for m in masks:
            d_row.append(dice(m, label))
            a = assd(m, label, spacing)
            a_row.append(a if math.isfinite(a) else diag)
        D.append(d_row)
        A.append(a_row)
        S.append(out["seconds"])
        M.append(out["misunderstanding"])
        F.append(out["flips"])
    n = len(D)
    mean = (lambda x: np.asarray(x, dtype=np.float64).mean(0).round(4).tolist()) if n else (lambda x: [])
    out = {"n_cases": n, "dice_per_step": mean(D), "assd_per_step": mean(A), "seconds_per_step": mean(S),
           "misunderstanding_per_step": mean(M), "flips_per_step": mean(F)}
    if per_case:
        out["per_case"] = [{"case_id": i, "dice": [round(float(v), 4) for v in d], "misunderstanding": [int(v) for v in m],
                            "flips": [int(v) for v in f]} for i, d, m, f in zip(ids, D, M, F)]
    if on_case is not None:
        out["on_case"] = hooked
    return out


def iter_cases(dataset, model, fusion: str, size: int | None, limit: int | None, seed: int, hold_back: bool = True):
    """Held-back, non-empty cases of ``dataset`` prepared like training (crop + fusion)."""
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
        x, y = _case_arrays(s, model, fusion, size, seed)
        if not y.any():
            continue
        n += 1
        yield x, y, tuple(s.spacing), s.case_id


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


def data_ndim(path, fmt: str | None, label: str | None = None) -> int:
    """Spatial dimensionality of the data's first case as read by default (LIDC: 2-D slices)."""
    ds = open_dataset(path, fmt, 2, label)
    if len(ds) == 0:
        raise ValueError(f"{path}: no cases")
    return int(ds[0].spatial_ndim)


def evaluate_model(method: str, data, model: str | None = None, *, fmt: str | None = None,
                   limit: int | None = None, seed: int = 0, steps: int = 5, fusion: str = "majority",
                   size: int | None = None, hint_points: int | None = None, all_patients: bool = False,
                   label: str | None = None, ndim: int | None = None, per_case: bool = False,
                   click_reach: float | None = None) -> dict[str, Any]:
    """One model (``model`` folder, default the shipped one for ``method`` and the
    data's dimensionality) on the held-back cases of ``data``: the results dict
    (:data:`RESULT_KEYS`, plus ``per_case`` with ``per_case=True``). ``click_reach``
    replaces the model's ``MECCAConfig.click_reach`` (0: every agent acts, the paper)."""
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    if ndim is None:
        if model is not None:
            from clinloop.models.mecca.config import MECCAConfig
            from clinloop.models.registry import resolve_model_dir

            ndim = MECCAConfig.load(resolve_model_dir(model) / "config.json").ndim
        else:
            ndim = data_ndim(data, fmt, label)
    net, _ = _load(method, model, ndim, None if label else task_of(data, fmt))
    if click_reach is not None:
        from dataclasses import replace

        net.cfg = replace(net.cfg, click_reach=float(click_reach))
    ds = open_dataset(data, fmt, ndim, label)
    size = (net.cfg.size if net.cfg.zoom == 1 and net.cfg.norm == "image" else 0) if size is None else size
    cases = iter_cases(ds, net, fusion, size, limit, seed, hold_back=not all_patients)
    res = evaluate_cases(net, cases, steps, seed, hint_points, per_case)
    if res["n_cases"] == 0:
        raise ValueError(f"{data}: no held-back {net.cfg.ndim}-D case with a non-empty {fusion} label")
    out = {"method": method, "protocol": "mecca", **res, "click_reach": net.cfg.click_reach}
    return {k: out[k] for k in RESULT_KEYS + ("per_case",) if k in out}
