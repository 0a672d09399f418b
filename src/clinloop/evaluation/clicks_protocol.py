"""Corrective clicks: are they honoured, and does Dice rise with each?
(``clinloop evaluate --protocol clicks``; the workstation issue's target: >= 95 %
of corrective clicks honoured on held-back LIDC and Dice rising per click.)

Per case the user is the spa protocol's (:class:`~clinloop.interaction.users.PreferredRaterUser`,
seed = ``--seed`` + case position; target = majority of a random subset of the
raters). Click 1 is at the centre of the target
(:func:`~clinloop.interaction.users.largest_error_click` against an empty
mask); clicks 2 .. ``--clicks`` are *corrective*: at the centre of the largest
error region of the current mask, an include click on a miss, an exclude click
on a leak (the RITM/NoC click rule). A corrective click is **honoured** when the
next mask puts the clicked pixel on the asked side. A case stops early when its
mask has no error left (the remaining clicks are not counted; Dice carries).

``results.json`` keys: ``method``, ``protocol``, ``n_cases``, ``n_corrective``
(corrective clicks made), ``honoured_rate`` (their share honoured),
``dice_per_click`` (mean Dice after each click, carried after an early stop),
``dice_gain_per_click`` (mean change of Dice per corrective click),
``seconds_per_click`` (median), ``model_only``, ``click_passes`` (SPA's decoder passes per
corrective click, else null), ``zoom`` (SPA's zoom settings, :mod:`clinloop.models.spa.zoom`, else
null), ``missed`` (per corrective click not honoured: its
``depth`` in pixels, the Euclidean distance from the clicked pixel to the edge of the error
region it was placed in, which is the region's largest, and the region's ``area``; see
:func:`click_depth`) and ``missed_depth_max``; per-case rows go to ``<out stem>_cases.csv``.
SPA honours corrective clicks as hard constraints by default
(:mod:`clinloop.interaction.constraints`), which makes every corrective click honoured
by construction; ``--model-only`` measures the network alone.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass

import numpy as np

from clinloop.config_options import opt
from clinloop.evaluation.spa_protocol import (
    SliceCasesOptions,
    slice_cases,
    write_results,
)

METHODS = ("spa", "meduhip", "click-litemedsam", "spa-random-gmm", "spa-mean-variance", "spa-weights")


@dataclass(kw_only=True)
class ClicksProtocolOptions(SliceCasesOptions):
    """``clinloop evaluate --protocol clicks`` (and ``clinloop.evaluate(method, "clicks", data, ...)``)."""

    protocol: str = "clicks"
    clicks: int = opt(5, help="clicks per case: the first plus clicks-1 corrective ones")
    model_only: bool = opt(False, help="switch SPA's click constraint off (config honour_clicks): the network's "
                                       "own response to each click")
    click_passes: int | None = opt(None, help="SPA: decoder passes per corrective click (config click_passes; "
                                              "default: the model's)")
    zoom_in: float | None = opt(None, help="SPA: corrective clicks also decode on a crop this many times the mask's "
                                          "size (config zoom_in; 0: off; default: the model's)")
    zoom_min: float | None = opt(None, help="SPA: the zoom crop's least side as a share of the image (config zoom_min)")
    zoom_mode: str | None = opt(None, help="SPA: 'mean' (crop and full frame averaged) or 'crop' (config zoom_mode)")
    zoom_when: str | None = opt(None, help="SPA: 'missed' (zoom only when the full frame leaves a click "
                                           "unhonoured) or 'always' (config zoom_when)")
    threads: int | None = opt(None, at_least=1)


OPTIONS = ClicksProtocolOptions


def click_depth(target: np.ndarray, mask: np.ndarray | None, x: float, y: float) -> tuple[float, int]:
    """How deep a click lies in the error region that holds it: the Euclidean distance from
    pixel ``(x, y)`` to the nearest pixel outside that region (the image edge counts as outside,
    as in :func:`~clinloop.interaction.users.largest_error_click`) and the region's area in
    pixels. A depth of 1 is a pixel on the region's rim. ``(0.0, 0)`` when ``(x, y)`` is not an
    error of ``mask`` against ``target``."""
    from scipy import ndimage

    target = np.asarray(target, bool)
    err = target ^ (np.zeros_like(target) if mask is None else np.asarray(mask, bool))
    lab, _ = ndimage.label(err)
    k = lab[int(y), int(x)]
    if k == 0:
        return 0.0, 0
    region = lab == k
    dt = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    return float(dt[int(y), int(x)]), int(region.sum())


def run_clicks(model, image: np.ndarray, target: np.ndarray, seed: int, clicks: int,
               structure: str | None = None) -> dict:
    """One case: ``clicks`` clicks on ``model`` (an ``InteractiveModel``) for the 2-D ``target``.
    Returns ``dice`` (after each click made), ``honoured`` (one bool per corrective click),
    ``missed`` (``{"click", "positive", "depth", "area"}`` per corrective click not honoured; the depth and
    area of the error region it was placed in, before the click) and ``seconds`` (per click)."""
    from clinloop.interaction.session import as_channels_first, structure_options
    from clinloop.interaction.users import dice, largest_error_click

    state = model.start(as_channels_first(image, (2,)), seed=seed, profile=None, **structure_options(model, structure))
    dices, honoured, missed, secs = [], [], [], []
    mask = None
    for k in range(clicks):
        c = largest_error_click(target, mask)
        if c is None:
            break
        (x, y), positive = c
        depth, area = click_depth(target, mask, x, y)
        t0 = time.perf_counter()
        p = state.click((x, y), positive)
        secs.append(time.perf_counter() - t0)
        mask = np.asarray(p.mask, bool)
        if k > 0:
            honoured.append(bool(mask[int(y), int(x)]) == positive)
            if not honoured[-1]:
                missed.append({"click": k + 1, "positive": positive, "depth": round(depth, 3), "area": area})
        dices.append(dice(mask, target))
    return {"dice": dices, "honoured": honoured, "missed": missed, "seconds": secs}


def _set_zoom(model, args: ClicksProtocolOptions) -> None:
    """``--zoom-in/--zoom-min/--zoom-mode/--zoom-when`` onto an SPA model's config (validated as the config is)."""
    keys = ("zoom_in", "zoom_min", "zoom_mode", "zoom_when")
    given = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    if not given:
        return
    cfg = getattr(model, "config", None)
    if not hasattr(cfg, "zoom_in"):
        raise ValueError(f"--zoom-in/--zoom-min/--zoom-mode/--zoom-when apply to SPA models; "
                         f"{args.method!r} has no zoom")
    from dataclasses import replace

    new = replace(cfg, **given)  # __post_init__ checks the values
    for k in given:
        setattr(cfg, k, getattr(new, k))


def run_protocol(args: ClicksProtocolOptions, verbose: bool = False) -> dict:
    """Run the protocol; returns the ``results.json`` content (written to ``args.out`` if set)."""
    import torch
    from tqdm.auto import tqdm

    from clinloop.evaluation.spa_protocol import load_method
    from clinloop.interaction.users import PreferredRaterUser

    if args.method not in METHODS:
        raise ValueError(f"the clicks protocol evaluates {', '.join(METHODS)}; got {args.method!r}")
    if args.clicks < 2:
        raise ValueError(f"--clicks must be >= 2 (the first click and at least one corrective click), got {args.clicks}")
    if args.threads:
        torch.set_num_threads(args.threads)
    ds, idx = slice_cases(args)
    model = load_method(args.method, args.model)
    if args.model_only and hasattr(model, "config") and hasattr(model.config, "honour_clicks"):
        model.config.honour_clicks = False
    if args.click_passes is not None:
        if not hasattr(getattr(model, "config", None), "click_passes"):
            raise ValueError(f"--click-passes applies to SPA models; {args.method!r} has no decoder passes")
        if args.click_passes < 1:
            raise ValueError(f"--click-passes must be >= 1, got {args.click_passes}")
        model.config.click_passes = int(args.click_passes)
    _set_zoom(model, args)
    rows, curves, honoured, missed, secs = [], [], [], [], []
    bar = tqdm(total=args.limit or len(idx), desc=f"clicks protocol ({args.method})", disable=not verbose)
    for pos, i in enumerate(idx):
        if args.limit is not None and len(rows) >= args.limit:
            break
        s = ds[i]
        seed = args.seed + pos
        target = PreferredRaterUser.from_raters(s.masks, seed=seed, rater_valid=s.rater_valid).target
        if not target.any():
            continue
        img = s.image[0] if s.image.shape[0] == 1 else np.moveaxis(s.image, 0, -1)
        r = run_clicks(model, img, target, seed, args.clicks, s.structure)
        d = r["dice"] + [r["dice"][-1]] * (args.clicks - len(r["dice"]))
        curves.append(d)
        honoured += r["honoured"]
        missed += [{"case_id": ds.case_ids[i], **m} for m in r["missed"]]
        secs += r["seconds"]
        row = {"case_id": ds.case_ids[i], "patient_id": s.patient_id, "seed": seed,
               "clicks_made": len(r["dice"]), "honoured": sum(r["honoured"]), "corrective": len(r["honoured"])}
        row.update({f"dice_{k + 1}": round(v, 5) for k, v in enumerate(d)})
        rows.append(row)
        bar.update(1)
        if honoured:
            bar.set_postfix(honoured=f"{np.mean(honoured):.2f}")
    bar.close()
    if not rows:
        raise ValueError(f"{args.data}: no case with a non-empty target in split {args.split!r}")
    gains = [c[k + 1] - c[k] for c, r in zip(curves, rows) for k in range(r["clicks_made"] - 1)]
    results = {
        "method": args.method, "protocol": "clicks", "n_cases": len(rows),
        "n_corrective": len(honoured),
        "honoured_rate": float(np.mean(honoured)) if honoured else None,
        "dice_per_click": [float(np.mean([c[k] for c in curves])) for k in range(args.clicks)],
        "dice_gain_per_click": float(np.mean(gains)) if gains else None,
        "seconds_per_click": float(statistics.median(secs)),
        "model_only": bool(args.model_only),
        "click_passes": getattr(getattr(model, "config", None), "click_passes", None),
        "zoom": {k: getattr(model.config, k) for k in ("zoom_in", "zoom_min", "zoom_mode", "zoom_when")}
        if hasattr(getattr(model, "config", None), "zoom_in") else None,
        "missed": missed,
        "missed_depth_max": max((m["depth"] for m in missed), default=None),
    }
    write_results(args.out, results, rows)
    if verbose:
        print(json.dumps(results, indent=2))
    return results
