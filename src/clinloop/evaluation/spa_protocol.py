"""SPA's evaluation protocol (spa.txt §4: Table 1 Dice after 1 and 3 iterations,
Fig. 4 NoC and failure rate; MedUHIP Table 3).

Per case a :class:`~clinloop.interaction.users.PreferredRaterUser` draws its
target (majority of a seeded random non-empty subset of raters; seed = ``--seed``
+ case position). Iteration 1 is the first interaction:

* SPA family (``spa``, ``meduhip``, ablations): a click at the centre of the
  target (:func:`largest_error_click` against an empty prediction); iterations
  2.. are candidate choices by the user (highest Dice to its target); when no
  candidate beats the current proposal the user accepts and the Dice stays.
* ``click-litemedsam``: the same first click, then clicks by ``--click-strategy``
  (default ``center``: centre of the largest error region; or MedUHIP's
  ``random``, ``clinician-disagreement``, ``last-wrong``).
* ``box-litemedsam``: the target's tight box first, then clicks as above.

``results.json`` keys: ``method``, ``protocol``, ``n_cases``,
``dice_per_iteration`` (mean Dice after each iteration), ``noc`` and
``failure_rate`` (thresholds "0.7".."0.9"; max ``--iterations``, failure = 10),
``seconds_per_iteration`` (median model time of a step), ``set_image_seconds``
(median time of ``start``, i.e. the image embedding; the on-disk cache makes
repeats fast), ``candidate_pairwise_dice`` (SPA family: mean pairwise Dice of
the K candidates shown after the first click, 1.0 = all identical, i.e. no
choice to make) and ``accepted_at`` (mean iteration at which the user
accepted; ``--iterations`` + 1 when never). Per-case rows go to ``<out stem>_cases.csv`` beside it.
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

METHODS = ("spa", "meduhip", "click-litemedsam", "box-litemedsam", "spa-random-gmm", "spa-mean-variance", "spa-weights")
THRESHOLDS = ("0.7", "0.75", "0.8", "0.85", "0.9")
FAIL_VALUE = 10
SPA_FAMILY = {"spa", "meduhip", "spa-random-gmm", "spa-mean-variance", "spa-weights"}
# the shipped model each method evaluates without --model (the ablations ship none: pass --model)
SHIPPED = {"spa": "spa-lidc", "meduhip": "meduhip-lidc", "click-litemedsam": "click-litemedsam-lidc"}


@dataclass(kw_only=True)
class SliceCasesOptions(ProtocolOptions):
    """Which 2-D cases a slice protocol (spa, clicks) evaluates: :func:`slice_cases`."""

    split: str = opt("all", choices=("all", "train", "val"),
                     help="patients: all, or the train/val part of the seeded patient split used in training")
    held_out_fraction: float = opt(0.2, flags=("--val-fraction",), help="held-out share of the patients (as trained)")
    split_seed: int = opt(0)
    per_nodule: int | None = opt(None, help="at most this many slices per nodule", at_least=1)
    structure: str | None = opt(None, help="the structure, for readers that hold several (RIGA: disc or cup)")


def slice_cases(args: SliceCasesOptions):
    """``(dataset, indices)``: the cases of ``args.split`` with a non-empty majority target
    (:func:`clinloop.training.spa_data.select_cases`), in dataset order."""
    from clinloop.data import load_dataset
    from clinloop.training.spa_data import no_cases_error, select_cases

    ds = load_dataset(args.data, args.format, **({"structure": args.structure} if args.structure else {}))
    idx = select_cases(ds, args.split, limit=None, val_fraction=args.held_out_fraction, seed=args.split_seed,
                       per_group=args.per_nodule)
    if not idx:
        raise no_cases_error(ds, args.split, f"the {getattr(args, 'protocol', 'spa')} protocol")
    return ds, idx


def write_results(out: str | Path | None, results: dict, rows: list[dict]) -> None:
    """``results`` to ``out`` (a ``.json`` file, or ``results.json`` in the folder ``out``) and the
    per-case ``rows`` to ``<stem>_cases.csv`` beside it; nothing when ``out`` is None."""
    from clinloop.atomic import atomic_write_text

    if out is None:
        return
    out = Path(out)
    if out.suffix != ".json":
        out = out / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    with open(out.with_name(out.stem + "_cases.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows(rows)


@dataclass(kw_only=True)
class SPAProtocolOptions(SliceCasesOptions):
    """``clinloop evaluate --protocol spa`` (and ``clinloop.evaluate(method, "spa", data, ...)``)."""

    protocol: str = "spa"
    iterations: int = opt(6, help="interaction iterations per case (max for NoC)")
    click_strategy: str = opt("center", choices=("center", "random", "clinician-disagreement", "last-wrong"))
    samples: int | None = opt(None, help="override SPA's N at inference")
    threads: int | None = opt(None, at_least=1)


OPTIONS = SPAProtocolOptions


def load_method(method: str, model: str | None):
    """The interactive model for ``method`` (``model``: folder or shipped name)."""
    from clinloop.models import registry

    if method == "box-litemedsam":
        from clinloop.models.baselines.litemedsam_interactive import load_box_litemedsam

        return load_box_litemedsam(None)
    if method == "click-litemedsam":
        from clinloop.models.baselines.litemedsam_interactive import (
            load_click_litemedsam,
        )

        # default: the shipped LIDC fine-tune (the pretrained decoder was trained on boxes only)
        return load_click_litemedsam(registry.resolve_model_dir(model or SHIPPED[method]))
    if not model and method not in SHIPPED:
        raise ValueError(f"no shipped model for {method!r}; pass --model MODEL_DIR")
    d = registry.resolve_model_dir(model or SHIPPED[method])
    m = registry.load_model(d)
    if getattr(m, "name", None) != method:
        raise ValueError(f"model {d} is a {getattr(m, 'name', '?')!r} model, not {method!r}")
    return m


def run_case(model, method: str, image: np.ndarray, masks: np.ndarray, valid, seed: int, iterations: int,
             click_strategy: str = "center", structure: str | None = None):
    """One case. Returns (dice per iteration, seconds per step, set-image seconds, user's raters,
    info: ``candidate_pairwise_dice`` after the first step (None without candidates), ``accepted_at``)."""
    from clinloop.interaction.session import as_channels_first, structure_options
    from clinloop.interaction.users import (
        CLICK_STRATEGIES,
        PreferredRaterUser,
        dice,
        largest_error_click,
        tight_box,
    )
    from clinloop.metrics import pairwise_dice

    user = PreferredRaterUser.from_raters(masks, seed=seed, rater_valid=valid)
    target = user.target
    img = as_channels_first(image, (2,))
    t0 = time.perf_counter()
    state = model.start(img, seed=seed, profile=None, **structure_options(model, structure))
    t_set = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    dices, secs = [], []
    p = None
    info = {"candidate_pairwise_dice": None, "accepted_at": iterations + 1}
    for it in range(iterations):
        t0 = time.perf_counter()
        if it == 0 and method == "box-litemedsam":
            p = state.box(tight_box(target))
        elif it == 0:
            (pt, pos) = largest_error_click(target, None)
            p = state.click(pt, pos)
        elif method in SPA_FAMILY:
            k = user.choose(p.candidates, p.mask)
            if k is None:  # accepted: the proposal no longer changes
                info["accepted_at"] = it + 1
                dices += [dices[-1]] * (iterations - it)
                break
            p = state.choose(k)
        else:
            if click_strategy == "center":
                c = largest_error_click(target, p.mask)
                if c is None:
                    dices += [dices[-1]] * (iterations - it)
                    break
            else:
                c = CLICK_STRATEGIES[click_strategy](target, p.mask, rng, masks)
            p = state.click(c[0], c[1])
        secs.append(time.perf_counter() - t0)
        dices.append(dice(p.mask, target))
        if it == 0 and p.candidates is not None and len(p.candidates) > 1:
            info["candidate_pairwise_dice"] = pairwise_dice(p.candidates)
    return dices, secs, t_set, user.raters, info


def run_protocol(args: SPAProtocolOptions, verbose: bool = False) -> dict:
    """Run the protocol; returns the ``results.json`` content (written to ``args.out``
    with the per-case CSV beside it when ``out`` is given; printed when ``verbose``)."""
    import torch
    from tqdm.auto import tqdm

    from clinloop.interaction.users import PreferredRaterUser
    from clinloop.metrics import noc

    if args.method not in METHODS:
        raise ValueError(f"the spa protocol evaluates {', '.join(METHODS)}; got {args.method!r}")
    if args.iterations < 1:
        raise ValueError(f"--iterations must be >= 1, got {args.iterations}")
    if args.threads:
        torch.set_num_threads(args.threads)
    ds, idx = slice_cases(args)
    model = load_method(args.method, args.model)
    if args.samples is not None and hasattr(model, "config"):
        model.config.n_samples = args.samples
    rows, all_secs, set_secs, curves = [], [], [], []
    bar = tqdm(total=args.limit or len(idx), desc=f"spa protocol ({args.method})", disable=not verbose)
    for pos, i in enumerate(idx):
        if args.limit is not None and len(rows) >= args.limit:
            break
        s = ds[i]
        seed = args.seed + pos
        if not PreferredRaterUser.from_raters(s.masks, seed=seed, rater_valid=s.rater_valid).target.any():
            continue
        img = s.image[0] if s.image.shape[0] == 1 else np.moveaxis(s.image, 0, -1)  # (C,H,W) -> grey / RGB
        d, secs, t_set, raters, info = run_case(model, args.method, img, s.masks, s.rater_valid, seed, args.iterations,
                                                args.click_strategy, s.structure)
        curves.append(d)
        all_secs += secs
        set_secs.append(t_set)
        row = {"case_id": ds.case_ids[i], "patient_id": s.patient_id, "raters": " ".join(map(str, raters)),
               "seed": seed, "set_image_seconds": round(t_set, 4), "accepted_at": info["accepted_at"]}
        if info["candidate_pairwise_dice"] is not None:
            row["candidate_pairwise_dice"] = round(info["candidate_pairwise_dice"], 5)
        row.update({f"dice_{k + 1}": round(v, 5) for k, v in enumerate(d)})
        row.update({f"noc_{t}": noc(d, float(t), max_iterations=args.iterations, fail_value=FAIL_VALUE) for t in THRESHOLDS})
        rows.append(row)
        bar.update(1)
        bar.set_postfix(d1=f"{np.mean([c[0] for c in curves]):.3f}")
    bar.close()
    if not rows:
        raise ValueError(f"{args.data}: no case with a non-empty target in split {args.split!r}")
    nocs = {t: [r[f"noc_{t}"] for r in rows] for t in THRESHOLDS}
    results = {
        "method": args.method,
        "protocol": "spa",
        "n_cases": len(rows),
        "dice_per_iteration": [float(np.mean([c[k] for c in curves])) for k in range(args.iterations)],
        "noc": {t: float(np.mean(v)) for t, v in nocs.items()},
        "failure_rate": {t: float(np.mean([x == FAIL_VALUE for x in v])) for t, v in nocs.items()},
        "seconds_per_iteration": float(statistics.median(all_secs)) if all_secs else 0.0,
        "set_image_seconds": float(statistics.median(set_secs)),
        "accepted_at": float(np.mean([r["accepted_at"] for r in rows])),
    }
    cpd = [r["candidate_pairwise_dice"] for r in rows if "candidate_pairwise_dice" in r]
    if cpd:
        results["candidate_pairwise_dice"] = float(np.mean(cpd))
    write_results(args.out, results, rows)
    if verbose:
        print(json.dumps(results, indent=2))
    return results
