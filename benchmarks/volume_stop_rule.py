"""The stop rule of volumetric SPA sessions, measured: 3-D Dice after one click for
several ``VolumeConfig.max_uncertainty`` thresholds (and ``min_overlap``), on the
held-back volumes of a model.

Per volume (the spa-3d protocol's cases, seeds and click: the interior point of
the target's largest axial slice) the click is propagated once **without** a stop
rule (``min_overlap`` 0, no centroid or uncertainty limit), keeping each slice's
mask and probability; every rule is then applied offline by walking outwards from
the anchor with :func:`clinloop.interaction.propagation.stop_reason`. This is
exact, not an approximation: up to the slice where a rule stops, propagation with
that rule visits the same slices with the same prompts (each slice is prompted by
the previous kept slice's mask), so one run serves every threshold.

    python benchmarks/volume_stop_rule.py --data ../shared/data/brats2018_flair --model spa-general
    python benchmarks/volume_stop_rule.py --data ../shared/data/left_atrium --model spa-general
    python benchmarks/volume_stop_rule.py --data ../shared/data/lidc/lidc_crops_dev.npz --model spa-lidc --limit 20

Per-volume runs are kept under ``--out`` (resumable). Prints one line per rule:
the mean 3-D Dice and the per-volume figures.
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

# no stop rule, and the propagation alone (the rules act on it; the orthogonal refinement follows it)
NO_STOP = {"min_overlap": 0.0, "max_centroid_shift": 1e9, "max_uncertainty": 1e9, "orthogonal": False}


def unstopped_run(model, sample, target: np.ndarray, seed: int, options: dict | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The click's 3-D mask and probability with the stop rule switched off (``options``: other
    :class:`~clinloop.interaction.propagation.VolumeConfig` fields, e.g. ``box_margin``)."""
    from clinloop.evaluation.spa3d_protocol import click_point
    from clinloop.interaction.propagation import VolumeConfig

    state = model.start_volume(sample.image, seed=seed, profile=None, config=VolumeConfig(**NO_STOP, **(options or {})),
                               spacing=sample.spacing, cache={})
    p = state.click(click_point(target), True)
    return p.mask.astype(bool), p.probability.astype(np.float32)


def apply_rule(mask: np.ndarray, prob: np.ndarray, anchor: int, cfg) -> np.ndarray:
    """The 3-D mask an unstopped run would have had under ``cfg``'s stop rule (module docstring)."""
    from clinloop.interaction.propagation import slice_uncertainty, stop_reason

    u_a = slice_uncertainty(mask[anchor], prob[anchor])
    keep = np.zeros_like(mask)
    keep[anchor] = mask[anchor]
    for d in (1, -1):
        prev, t, peak = mask[anchor], anchor + d, int(mask[anchor].sum())
        trough = peak
        while (0 <= t < len(mask) and mask[t].any()
               and stop_reason(prev, mask[t], cfg, prob[t], peak, u_a, trough) is None):
            keep[t] = prev = mask[t]
            peak, trough, t = max(peak, int(prev.sum())), min(trough, int(prev.sum())), t + d
    return keep


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="spa-general")
    ap.add_argument("--limit", type=int, default=None, help="held-back volumes (default: all)")
    ap.add_argument("--seed", type=int, default=0, help="the spa-3d protocol's --seed")
    ap.add_argument("--max-uncertainty", default="0.75,0.9,1.0,1.25")
    ap.add_argument("--min-overlap", default="0.2")
    ap.add_argument("--min-area-fraction", default="0,0.05")
    ap.add_argument("--anchor-uncertainty", default="0,1")
    ap.add_argument("--regrow-below", default="0", help="VolumeConfig.regrow_below values (0: off)")
    ap.add_argument("--regrow-factor", default="1.1")
    ap.add_argument("--propagation", default="{}", help="JSON: VolumeConfig options of the unstopped run "
                    "(box_margin, box_threshold, use_mask, ...)")
    ap.add_argument("--split", choices=("held-back", "train"), default="held-back",
                    help="the model's held-back volumes, or its training ones (to choose a rule)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--embedding-cache", action="store_true", help="use the on-disk slice-embedding cache")
    ap.add_argument("--out", default="runs/volume_stop_rule")
    a = ap.parse_args(argv)

    import torch

    from clinloop import load_model
    from clinloop.evaluation.spa3d_protocol import load_volumes, target_volumes, volume_split
    from clinloop.interaction.propagation import VolumeConfig
    from clinloop.metrics import dice

    torch.set_num_threads(a.threads)
    ds = load_volumes(a.data)
    model = load_model(a.model)
    model.disk_cache = a.embedding_cache
    options = json.loads(a.propagation)
    VolumeConfig(**NO_STOP, **options)  # bad options fail before any work
    idx, note = volume_split(ds, a.model, a.split)
    tag = "-".join(f"{k}={v}" for k, v in sorted(options.items())) or "default"
    out = Path(a.out) / Path(a.model).name / Path(a.data).name / tag
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    # the protocol's order and seeds (seed + position among held-back cases)
    for pos, i, s, target in target_volumes(ds, idx, a.limit):
        f = out / (ds.case_ids[i].replace("/", "_") + ".npz")
        if not f.is_file():
            mask, prob = unstopped_run(model, s, target, a.seed + pos, options)
            np.savez_compressed(f, mask=mask, prob=prob.astype(np.float16))
        d = np.load(f)
        runs.append((ds.case_ids[i], d["mask"], d["prob"].astype(np.float32), target))
        z = int(np.argmax(target.sum((1, 2))))
        print(f"{ds.case_ids[i]}: unstopped {dice(d['mask'], target):.3f}; clicked slice {z}: Dice "
              f"{dice(d['mask'][z], target[z]):.3f}, {int(d['mask'][z].sum())} px for {int(target[z].sum())}",
              flush=True)
    print(f"{a.model} on {a.data}: {len(runs)} {note}")
    for u, r, o, f, rb, rf in itertools.product(*([float(v) for v in x.split(",")] for x in (
            a.max_uncertainty, a.anchor_uncertainty, a.min_overlap, a.min_area_fraction, a.regrow_below,
            a.regrow_factor))):
        cfg = VolumeConfig(max_uncertainty=u, anchor_uncertainty=r, min_overlap=o, min_area_fraction=f,
                           regrow_below=rb, regrow_factor=rf, **options)
        ds_ = [dice(apply_rule(m, p, int(np.argmax(t.sum((1, 2)))), cfg), t) for _, m, p, t in runs]
        print(f"max_uncertainty {u:g} anchor_uncertainty {r:g} min_overlap {o:g} min_area_fraction {f:g} "
              f"regrow_below {rb:g} regrow_factor {rf:g}: mean 3-D Dice {np.mean(ds_):.4f} "
              f"({' '.join(f'{x:.3f}' for x in ds_)})")


if __name__ == "__main__":
    main()
