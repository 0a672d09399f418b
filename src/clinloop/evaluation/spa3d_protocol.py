"""Volumetric SPA evaluation (issue 13, "Evaluation"): one click, a 3-D mask.

``clinloop evaluate --protocol spa-3d --method spa --data PATH`` (and
``clinloop.evaluate("spa", "spa-3d", data, ...)``) on a dataset of volumes:
LIDC nodule volumes (the LIDC reader's ``volumes=True``: the consecutive
slices of one (patient, nodule) stacked), BraTS case folders, the Decathlon
layout (the left atrium). Per case:

* **Target.** The majority vote of the valid raters (a voxel counts when at
  least half of them drew it: >= 2 of LIDC's 4 radiologists); the single label
  when there is one rater.
* **Cases.** Held-back cases only: a case whose patient is in the model's
  ``data.json`` ``train_case_ids`` is skipped (``n_excluded_trained``). For a
  dataset the model never trained on (BraTS and the atrium for ``spa-lidc``)
  this keeps every case; ``split`` says which applied.
* **SPA, volumetric** (:class:`clinloop.models.spa.volume.VolumeState`):
  iteration 1 is one positive click at the target's interior point (farthest
  from its boundary, :func:`clinloop.interaction.propagation.interior_point`)
  on its largest axial slice; iterations 2 .. ``iterations`` + 1 are choices
  among the K 3-D candidates by :class:`clinloop.interaction.users.PreferredRaterUser`
  (highest 3-D Dice to the target; when none beats the current mask the user
  accepts and the Dice stays, as in the ``spa`` protocol). ``--first box``: iteration 1
  is the tight box of that slice instead (``Session.box``, :func:`first_box`); the
  keys keep their names (``dice_click`` is then the box's), ``first`` says which.
* **Slice-by-slice baseline.** One click per target slice (the same interior
  point rule, on that slice), each slice a separate one-slice session (exactly
  a 2-D SPA session, no propagation); the slice masks are stacked. Clicks =
  the number of target slices. The slice embeddings are shared with the
  volumetric run (one in-memory cache per case), so the baseline only encodes
  the target slices the volumetric run did not reach: its ``seconds`` are the
  decoder time plus those encodings (``baseline_encoded``).

``results.json`` keys: ``method``, ``protocol``, ``model``, ``n_cases``,
``split``, ``n_excluded_trained``, ``dice_per_iteration`` (mean 3-D Dice after
each of the ``iterations`` + 1 steps), ``dice_click`` (= its first entry),
``assd_click`` / ``assd_final`` (mean ASSD, :func:`clinloop.metrics.assd`
with the voxel spacing, over the cases whose mask is not empty;
``assd_empty`` counts those), ``noc`` / ``failure_rate`` (thresholds "0.8",
"0.9"; max ``iterations`` + 1, failure = 10 as in the ``spa`` protocol),
``seconds_click`` (mean seconds from the click to the full 3-D mask, encoding
included; ``seconds_click_median``), ``encoded_slices`` (mean per case),
``baseline`` (``dice``, ``assd``, ``clicks``, ``seconds``: means),
``target_dice_click`` / ``target_met`` (issue 13's goal for the data's format,
absent for others) and ``cases`` (one row per case, also written to
``<out stem>_cases.csv``). ``--save-masks`` writes ``<out stem>_masks/<n>.npz``
(``target``, ``click``, ``final``, ``baseline`` as (D, H, W) bool, ``spacing``).
"""
from __future__ import annotations

import csv
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clinloop.config_options import ProtocolOptions, opt
from clinloop.evaluation.spa_protocol import FAIL_VALUE, SHIPPED, load_method
from clinloop.interaction.session import structure_options

METHODS = ("spa", "meduhip", "spa-random-gmm", "spa-mean-variance", "spa-weights")  # the SPA family
THRESHOLDS = ("0.8", "0.9")
# issue 13's targets for the mean 3-D Dice after the click, by dataset format
TARGETS = {"lidc": 0.75, "brats": 0.65, "decathlon": 0.75}


@dataclass(kw_only=True)
class SPA3DProtocolOptions(ProtocolOptions):
    """``clinloop evaluate --protocol spa-3d`` (and ``clinloop.evaluate(method, "spa-3d", data, ...)``)."""

    protocol: str = "spa-3d"
    iterations: int = opt(5, help="candidate choices after the click (NoC max = iterations + 1)")
    no_baseline: bool = opt(False, help="skip the slice-by-slice baseline (one click per target slice)")
    save_masks: bool = opt(False, help="write the target and result masks beside --out")
    embedding_cache: bool = opt(False, help="use the on-disk embedding cache (off: the seconds include encoding)")
    held_back_of: str | None = opt(None, metavar="MODEL",
                                   help="keep the cases this model (folder or shipped name) did not train on, "
                                        "instead of the evaluated model's: compare two models on the same volumes")
    box_margin: float = opt(0.0, help="VolumeConfig.box_margin: widen each propagated box by this share of "
                                      "its side (0: the tight box, the default)")
    first: str = opt("click", choices=["click", "box"],
                     help="the first action: a click inside the target's largest slice (the protocol) or the "
                          "tight box of that slice (Session.box)")
    propagate_mask: bool = opt(False, help="VolumeConfig.use_mask: also prompt each propagated slice with the "
                                           "previous slice's mask (off by default)")
    min_area_fraction: float = opt(0.0, help="VolumeConfig.min_area_fraction: stop below this share of the largest "
                                             "slice kept in a direction (0: off, the default)")
    regrow_below: float = opt(0.0, help="VolumeConfig.regrow_below: once a direction's slices shrank below this "
                                        "share of its largest, stop at one that regrows (0: off, the default)")
    regrow_factor: float = opt(1.1, help="VolumeConfig.regrow_factor: 'regrows' = larger than this times the "
                                         "smallest slice kept in the direction")
    no_orthogonal: bool = opt(False, help="VolumeConfig.orthogonal = False: the propagation along the clicked "
                                          "axis alone, without the refinement along the two other axes")
    orthogonal_min_extent: float = opt(16.0, help="VolumeConfig.orthogonal_min_extent: refine only structures "
                                                  "whose propagated slices span at least this many pixels")
    threads: int | None = opt(None, at_least=1)


OPTIONS = SPA3DProtocolOptions
FIRST = ("click", "box")


def target_of(masks: np.ndarray, rater_valid=None) -> np.ndarray:
    """Majority vote of the valid raters, ``(R, D, H, W)`` -> ``(D, H, W)`` bool: a voxel is
    in the target when at least half of them drew it (>= 2 of 4; the mask itself for one)."""
    m = np.asarray(masks, bool)
    valid = np.ones(len(m), bool) if rater_valid is None else np.asarray(rater_valid, bool)
    if not valid.any():
        return np.zeros(m.shape[1:], bool)
    return m[valid].sum(0) * 2 >= int(valid.sum())


def click_point(target: np.ndarray) -> tuple[float, float, float]:
    """``(x, y, z)``: the interior point of the target's largest slice along axis 0 of a
    ``(D, H, W)`` mask (the point farthest from the boundary)."""
    import torch

    from clinloop.interaction.propagation import interior_point

    z = int(np.argmax(target.sum((1, 2))))
    x, y = interior_point(torch.from_numpy(np.ascontiguousarray(target[z])))
    return x, y, float(z)


class _OffsetCache:
    """A view of a volume's slice-embedding cache for a one-slice volume cut at ``offset``
    (keys ``(0, t)`` -> ``(0, t + offset)``), so one-slice sessions reuse the volume's embeddings."""

    def __init__(self, cache: dict, offset: int) -> None:
        self.cache, self.offset = cache, offset

    def _key(self, key):
        if key[0] != 0:
            raise ValueError(f"the slice-by-slice baseline runs along axis 0; got key {key}")
        return (0, key[1] + self.offset)

    def __contains__(self, key) -> bool:
        return self._key(key) in self.cache

    def __getitem__(self, key):
        return self.cache[self._key(key)]

    def __setitem__(self, key, value) -> None:
        self.cache[self._key(key)] = value


def _assd(mask, target, spacing) -> float | None:
    from clinloop.metrics import assd

    return None if not mask.any() else assd(mask, target, spacing)


def first_box(target: np.ndarray) -> tuple[float, float, float, float, float]:
    """``(x0, y0, x1, y1, z)``: the tight box of the target's largest slice along axis 0 (the
    slice :func:`click_point` clicks), as ``Session.box`` takes it on a volume."""
    from clinloop.interaction.users import tight_box

    z = int(np.argmax(target.sum((1, 2))))
    return (*tight_box(target[z]), float(z))


def run_volume(model, image: np.ndarray, target: np.ndarray, spacing, seed: int, iterations: int, cache: dict,
               box_margin: float = 0.0, first: str = "click", structure: str | None = None,
               **propagation) -> tuple[dict, list[float], np.ndarray, np.ndarray]:
    """SPA on one ``(C, D, H, W)`` volume: the click (``first="box"``: the tight box of the same
    slice, :func:`first_box`), then up to ``iterations`` choices (``box_margin`` and any other
    ``propagation`` keyword: options of :class:`clinloop.interaction.propagation.VolumeConfig`).
    Returns (row, 3-D Dice per step (``iterations`` + 1), the first action's mask, the final mask)."""
    from clinloop.interaction.propagation import VolumeConfig
    from clinloop.interaction.users import PreferredRaterUser
    from clinloop.metrics import dice

    if first not in FIRST:
        raise ValueError(f"first must be one of {', '.join(FIRST)}; got {first!r}")
    config = VolumeConfig(box_margin=box_margin, **propagation)
    state = model.start_volume(image, seed=seed, profile=None, config=config, spacing=spacing, cache=cache,
                               **structure_options(model, structure))
    t0 = time.perf_counter()
    p = state.click(click_point(target), True) if first == "click" else state.box(first_box(target))
    seconds = time.perf_counter() - t0
    first = p.mask.copy()
    dices, accepted = [dice(p.mask, target)], iterations + 2
    # the user compares whole volumes: Dice is the same on (D, H*W) as on (D, H, W)
    user = PreferredRaterUser(target.reshape(target.shape[0], -1))
    for it in range(iterations):
        k = None if p.candidates is None else user.choose(
            p.candidates.reshape(len(p.candidates), target.shape[0], -1), p.mask.reshape(target.shape[0], -1))
        if k is None:  # accepted: no candidate beats the current mask
            accepted = it + 2
            dices += [dices[-1]] * (iterations - it)
            break
        p = state.choose(k)
        dices.append(dice(p.mask, target))
    row = {"seconds_click": round(seconds, 3), "encoded_slices": len(cache), "accepted_at": accepted}
    row["slices_target"] = int(target.any((1, 2)).sum())
    row["slices_mask"] = int(first.any((1, 2)).sum())
    return row, dices, first, p.mask.astype(bool)


def run_baseline(model, image: np.ndarray, target: np.ndarray, spacing, seed: int, cache: dict,
                 structure: str | None = None) -> tuple[dict, np.ndarray]:
    """One click per target slice, each slice a one-slice session (2-D SPA); returns
    (row: ``baseline_clicks``, ``baseline_seconds``, ``baseline_encoded``; the stacked mask)."""
    from clinloop.interaction.propagation import VolumeConfig

    mask = np.zeros(target.shape, bool)
    clicks, n0, t0 = 0, len(cache), time.perf_counter()
    for t in np.flatnonzero(target.any((1, 2))):
        sub = image[:, t:t + 1]
        state = model.start_volume(sub, seed=seed, profile=None, config=VolumeConfig(), spacing=spacing,
                                   cache=_OffsetCache(cache, int(t)), **structure_options(model, structure))
        x, y, _ = click_point(target[t:t + 1])
        mask[t] = state.click((x, y, 0.0), True).mask[0]
        clicks += 1
    return ({"baseline_clicks": clicks, "baseline_seconds": round(time.perf_counter() - t0, 3),
             "baseline_encoded": len(cache) - n0}, mask)


def held_back(ds, model: str | None, method: str) -> tuple[list[int], int, str]:
    """Indices of the cases whose patient the model did not train on, the number skipped, and a note."""
    from clinloop.models.registry import resolve_model_dir

    info = {}
    try:
        f = resolve_model_dir(model or SHIPPED[method]) / "data.json"
        info = json.loads(f.read_text()) if f.is_file() else {}
    except (KeyError, ValueError, OSError):
        info = {}
    trained = {str(c).split("/")[0] for c in info.get("train_case_ids", [])}
    trained |= {str(p) for p in info.get("train_patient_ids", [])}  # models trained on several datasets (--mix)
    trained |= {str(p) for p in info.get("expert", {}).get("train_patient_ids", [])}  # a structure expert's too
    keep = [i for i, p in enumerate(ds.patient_ids) if str(p) not in trained]
    skipped = len(ds) - len(keep)
    note = (f"held-back patients ({skipped} cases of trained patients skipped)" if skipped
            else "all cases (the model did not train on this data)")
    return keep, skipped, note


def load_volumes(data, fmt: str | None = None):
    """The protocol's dataset of volumes: LIDC as nodule volumes, any other layout as read."""
    from clinloop.data.registry import detect_format, load_dataset

    fmt = fmt or detect_format(data)
    return load_dataset(data, fmt, volumes=True) if fmt == "lidc" else load_dataset(data, fmt)


def volume_split(ds, model: str | None, split: str = "held-back", method: str = "spa") -> tuple[list[int], str]:
    """Indices and a note: the volumes whose patients ``model`` did not train on (``held-back``,
    :func:`held_back`) or those it did (``train``: to choose an option without the held-back ones)."""
    idx, _, note = held_back(ds, model, method)
    if split == "train":
        hb = set(idx)
        return [i for i in range(len(ds)) if i not in hb], "the model's training volumes"
    if split != "held-back":
        raise ValueError(f"split must be 'held-back' or 'train', got {split!r}")
    return idx, note


def target_volumes(ds, idx, limit: int | None = None):
    """``(pos, i, sample, target)`` for the cases ``idx`` whose protocol target is not empty, in
    order; ``pos`` = the position in ``idx`` (the seed offset), at most ``limit`` of them."""
    n = 0
    for pos, i in enumerate(idx):
        if limit is not None and n >= limit:
            return
        s = ds[i]
        target = target_of(s.masks, s.rater_valid)
        if target.any():
            n += 1
            yield pos, i, s, target


def _mean(v) -> float | None:
    v = [x for x in v if x is not None]
    return float(np.mean(v)) if v else None


def run_protocol(args: SPA3DProtocolOptions, verbose: bool = False) -> dict:
    """Run the protocol; returns the ``results.json`` content (written to ``args.out`` with
    the per-case CSV beside it when ``out`` is given; printed when ``verbose``)."""
    import torch

    from clinloop.atomic import atomic_write_text
    from clinloop.data.registry import detect_format
    from clinloop.metrics import dice, noc

    if args.method not in METHODS:
        raise ValueError(f"the spa-3d protocol evaluates {', '.join(METHODS)}; got {args.method!r}")
    if args.iterations < 0:
        raise ValueError(f"--iterations must be >= 0, got {args.iterations}")
    from clinloop.interaction.propagation import VolumeConfig

    propagation = {"use_mask": args.propagate_mask, "min_area_fraction": args.min_area_fraction,
                   "regrow_below": args.regrow_below, "regrow_factor": args.regrow_factor,
                   "orthogonal": not args.no_orthogonal, "orthogonal_min_extent": args.orthogonal_min_extent}
    VolumeConfig(box_margin=args.box_margin, **propagation)  # bad options fail before any work
    if args.threads:
        torch.set_num_threads(args.threads)
    fmt = args.format or detect_format(args.data)
    ds = load_volumes(args.data, fmt)
    if len(ds) == 0:
        raise ValueError(f"{args.data}: the dataset has no cases")
    shape = ds[0].image.shape
    if len(shape) != 4:
        raise ValueError(f"{args.data}: case {ds.case_ids[0]!r} is a 2-D image of shape {shape}; the spa-3d "
                         "protocol needs volumes (C, D, H, W): a LIDC .npz, BraTS case folders, a Decathlon "
                         "layout or NIfTI/DICOM volumes")
    model = load_method(args.method, args.model)
    if not hasattr(model, "start_volume"):
        raise ValueError(f"model {args.model or args.method!r} has no volumetric sessions")
    model.disk_cache = bool(args.embedding_cache)
    idx, skipped, note = held_back(ds, args.held_back_of or args.model, args.method)
    out = None if args.out is None else Path(args.out)
    if out is not None and out.suffix != ".json":
        out = out / "results.json"
    rows, curves, n_steps = [], [], args.iterations + 1
    for pos, i, s, target in target_volumes(ds, idx, args.limit):
        seed, cache = args.seed + pos, {}
        row = {"case_id": ds.case_ids[i], "patient_id": s.patient_id, "seed": seed, "depth": int(target.shape[0])}
        r, d, first, final = run_volume(model, s.image, target, s.spacing, seed, args.iterations, cache,
                                        args.box_margin, args.first, s.structure, **propagation)
        row.update(r)
        row["assd_click"], row["assd_final"] = _assd(first, target, s.spacing), _assd(final, target, s.spacing)
        row.update({f"dice_{k + 1}": round(v, 5) for k, v in enumerate(d)})
        row.update({f"noc_{t}": noc(d, float(t), max_iterations=n_steps, fail_value=FAIL_VALUE) for t in THRESHOLDS})
        base = None
        if not args.no_baseline:
            rb, base = run_baseline(model, s.image, target, s.spacing, seed, cache, s.structure)
            row.update(rb, baseline_dice=round(dice(base, target), 5), baseline_assd=_assd(base, target, s.spacing))
        if out is not None and args.save_masks:
            mdir = out.with_name(out.stem + "_masks")
            mdir.mkdir(parents=True, exist_ok=True)
            extra = {} if base is None else {"baseline": base}
            np.savez_compressed(mdir / f"{len(rows)}.npz", target=target, click=first, final=final,
                                spacing=np.asarray(s.spacing, float), **extra)
            row["masks"] = f"{mdir.name}/{len(rows)}.npz"
        rows.append(row)
        curves.append(d)
        if verbose:
            print(f"{row['case_id']}: D={row['depth']} 3-D Dice {d[0]:.3f} -> {d[-1]:.3f}, "
                  f"{row['seconds_click']:.1f} s, baseline {row.get('baseline_dice', float('nan')):.3f} "
                  f"({row.get('baseline_clicks', 0)} clicks)", flush=True)
    if not rows:
        raise ValueError(f"{args.data}: no held-back case with a non-empty target")
    nocs = {t: [r[f"noc_{t}"] for r in rows] for t in THRESHOLDS}
    results = {
        "method": args.method, "protocol": "spa-3d", "model": args.model or SHIPPED.get(args.method), "format": fmt,
        "n_cases": len(rows), "split": note, "n_excluded_trained": skipped, "iterations": args.iterations,
        "first": args.first, "box_margin": args.box_margin, "propagate_mask": args.propagate_mask,
        "min_area_fraction": args.min_area_fraction, "regrow_below": args.regrow_below,
        "regrow_factor": args.regrow_factor, "orthogonal": not args.no_orthogonal,
        "orthogonal_min_extent": args.orthogonal_min_extent,
        "dice_per_iteration": [float(np.mean([c[k] for c in curves])) for k in range(n_steps)],
        "assd_click": _mean(r["assd_click"] for r in rows), "assd_final": _mean(r["assd_final"] for r in rows),
        "assd_empty": sum(r["assd_click"] is None for r in rows),
        "noc": {t: float(np.mean(v)) for t, v in nocs.items()},
        "failure_rate": {t: float(np.mean([x == FAIL_VALUE for x in v])) for t, v in nocs.items()},
        "seconds_click": float(np.mean([r["seconds_click"] for r in rows])),
        "seconds_click_median": float(statistics.median(r["seconds_click"] for r in rows)),
        "encoded_slices": float(np.mean([r["encoded_slices"] for r in rows])),
    }
    results["dice_click"] = results["dice_per_iteration"][0]
    if not args.no_baseline:
        results["baseline"] = {"dice": _mean(r["baseline_dice"] for r in rows),
                               "assd": _mean(r["baseline_assd"] for r in rows),
                               "clicks": _mean(r["baseline_clicks"] for r in rows),
                               "seconds": _mean(r["baseline_seconds"] for r in rows)}
    if fmt in TARGETS and args.first == "click":  # issue 13's goal is after one click
        results["target_dice_click"] = TARGETS[fmt]
        results["target_met"] = bool(results["dice_click"] >= TARGETS[fmt])
    results["cases"] = rows
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(results, indent=2) + "\n")
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with open(out.with_name(out.stem + "_cases.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    if verbose:
        print(json.dumps({k: v for k, v in results.items() if k != "cases"}, indent=2))
    return results
