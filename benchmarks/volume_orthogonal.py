"""Variants of the orthogonal refinement of a volume session (issue 13;
clinloop.models.spa.orthogonal), on the spa-3d protocol's click, 3-D Dice after the click.

Per volume: the session's propagation along the axial axis without refinement
(``VolumeConfig(orthogonal=False)``, "axial"), then, with the same slice embeddings and the
step's N latents, every coronal and every sagittal plane the axial mask touches prompted by
the box of the mask's plane, each side moved out by ``margin`` of its side. Reported per
margin: the coronal and sagittal planes alone (their mean-of-N probability > 0.5), the
mean of the two, the mean of all three, and a second round (the planes prompted again from
the three-way result). The shipped rule (``VolumeConfig()``: margin 0.05, majority of three
per latent sample) is the protocol's default; ``--no-orthogonal`` there gives "axial";
``--shipped`` adds it per case here ("shipped"), with the propagated slice count and the
spacing's anisotropy (largest / smallest), so a rule for when to refine can be chosen on a
model's training volumes (``--split train``); ``--margins ''`` skips the variants.

    python benchmarks/volume_orthogonal.py --data ../shared/data/left_atrium --model spa-general \\
        --embedding-cache --threads 1 --split train --limit 6 --out runs/orthogonal-atrium-train.json
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def plane_probability(state, mask: np.ndarray, z, axis: int, margin: float) -> np.ndarray:
    """(D, H, W) probability from the planes along ``axis`` that ``mask`` touches, each prompted
    by the box of its plane of ``mask`` (moved out by ``margin``) under the latents ``z``."""
    import torch

    from clinloop.interaction import planes as pl
    from clinloop.interaction.propagation import propagated_box

    out = np.zeros(mask.shape, np.float32)
    with torch.inference_mode():
        for t in range(mask.shape[axis]):
            plane = pl.take(mask, axis, t)
            if not plane.any():
                continue
            s = state._slice(t, axis)
            m = s.plane_to_model(plane)
            if m.any():
                pl.put(out, axis, t, state._run(t, s, (None, propagated_box(m, margin), None), z).prob.numpy())
    return out


def run(data: str, model_name: str, margins, split: str, limit: int | None, threads: int,
        embedding_cache: bool, shipped: bool = False, min_extent: float = 16.0) -> dict:
    import torch

    from clinloop.evaluation.spa3d_protocol import click_point, load_volumes, target_volumes, volume_split
    from clinloop.evaluation.spa_protocol import load_method
    from clinloop.interaction.propagation import VolumeConfig
    from clinloop.metrics import dice
    from clinloop.models.spa.preference_distribution import sample

    torch.set_num_threads(threads)
    ds = load_volumes(data)
    model = load_method("spa", model_name)
    model.disk_cache = embedding_cache
    idx, note = volume_split(ds, model_name, split)
    rows = []
    for pos, i, s, target in target_volumes(ds, idx, limit):
        cache: dict = {}
        state = model.start_volume(s.image, seed=pos, profile=None, spacing=s.spacing, cache=cache,
                                   config=VolumeConfig(orthogonal=False))
        p = state.click(click_point(target), True)
        z, _ = sample(state.gmm, model.config.n_samples, torch.Generator().manual_seed(int(p.extra["sample_seed"])))
        spacing = [float(v) for v in (s.spacing or (1, 1, 1))]
        row = {"case_id": ds.case_ids[i], "slices": p.extra["n_slices"], "anisotropy": max(spacing) / min(spacing),
               "axial": round(dice(p.mask, target), 4)}
        if shipped:  # the session with VolumeConfig() (majority of three per sample), same seed and cache
            on = model.start_volume(s.image, seed=pos, profile=None, spacing=s.spacing, cache=cache,
                                    config=VolumeConfig(orthogonal_min_extent=min_extent))
            row["shipped"] = round(dice(on.click(click_point(target), True).mask, target), 4)
        for mg in margins:
            p1, p2 = (plane_probability(state, p.mask, z, b, mg) for b in (1, 2))
            three = (p.probability + p1 + p2) / 3 > 0.5
            q1, q2 = (plane_probability(state, three, z, b, mg) for b in (1, 2))
            row[f"margin {mg}"] = {k: round(dice(v, target), 4) for k, v in {
                "coronal": p1 > 0.5, "sagittal": p2 > 0.5, "mean of 2": (p1 + p2) / 2 > 0.5, "mean of 3": three,
                "round 2, mean of 3": (p.probability + q1 + q2) / 3 > 0.5}.items()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    means = {k: float(np.mean([r[k] for r in rows])) for k in ("axial", "shipped") if k in rows[0]}
    for mg in margins:
        for k in (rows[0][f"margin {mg}"] if rows else ()):
            means[f"margin {mg}: {k}"] = float(np.mean([r[f"margin {mg}"][k] for r in rows]))
    for k, v in means.items():
        print(f"{k}: {v:.4f}")
    return {"data": data, "model": model_name, "split": note, "n_cases": len(rows), "mean_dice": means, "cases": rows}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a volume dataset (BraTS case folders, a Decathlon layout, ...)")
    ap.add_argument("--model", default="spa-general", help="shipped model name or model directory")
    ap.add_argument("--margins", default="0,0.05", help="comma-separated box margins (shares of the side)")
    ap.add_argument("--split", default="held-back", choices=["held-back", "train"])
    ap.add_argument("--limit", type=int, default=None, help="first N volumes of the split")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--embedding-cache", action="store_true", help="keep slice embeddings on disk")
    ap.add_argument("--shipped", action="store_true", help="also the session with VolumeConfig() (the shipped rule)")
    ap.add_argument("--min-extent", type=float, default=16.0,
                    help="VolumeConfig.orthogonal_min_extent of --shipped (3: refine the short LIDC nodules too)")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    a = ap.parse_args(argv)
    margins = [float(v) for v in a.margins.split(",") if v.strip()]
    res = run(a.data, a.model, margins, a.split, a.limit, a.threads, a.embedding_cache, a.shipped, a.min_extent)
    if a.out:
        from clinloop.atomic import atomic_write_text

        atomic_write_text(a.out, json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
