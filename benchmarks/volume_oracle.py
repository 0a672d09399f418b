"""Where a volumetric SPA session loses 3-D Dice: the session after one click against two
oracles that prompt every slice of the target from the truth (issue 13's diagnosis).

Per volume (the spa-3d protocol's target and click, seed = position in the list):
- ``session``: one click, the structure followed through the slices (what ships);
- ``session-in-extent``: the session's mask on the target's slices only (the session with a
  stop rule that knew where the structure ends);
- ``prev-box``: each target slice prompted by the tight box of the *true* mask of its
  neighbour towards the clicked slice (propagation with a perfect previous slice: what the
  segmenter gives when drift and stopping cost nothing);
- ``own-box``: each target slice prompted by the tight box of its own true mask (the best a
  box prompt can give; slices outside the target stay empty in both oracles).

The oracles share the slice embeddings and the session's latent samples z. The gap
session → session-in-extent is what running past the structure's ends costs, session-in-extent
→ prev-box what the drift of the propagated box (each slice prompted by the previous slice's
own, imperfect mask) costs; prev-box → own-box what a one-slice offset of the box costs;
1 − own-box what the segmenter itself misses.

    python benchmarks/volume_oracle.py --data ../shared/data/left_atrium --model spa-general \\
        --embedding-cache --threads 1 --out runs/oracle-atrium.json
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def _slice_prompt_box(state, t: int, plane: np.ndarray):
    """The tight box of ``plane`` (input frame, bool) in slice t's model frame, ``(1, 4)``."""
    from clinloop.interaction.propagation import propagated_box

    s = state._slice(t)
    m = s.plane_to_model(plane)
    return s, propagated_box(m)


def oracle_volume(state, target: np.ndarray, anchor: int, z, mode: str) -> np.ndarray:
    """The (D, H, W) mask of one oracle (module docstring) on axial slices."""
    import torch

    out = np.zeros(target.shape, bool)
    for t in np.flatnonzero(target.any((1, 2))):
        src = t if mode == "own-box" else (t - int(np.sign(t - anchor)) if t != anchor else t)
        if not target[src].any():
            src = t
        s, box = _slice_prompt_box(state, int(t), target[src])
        with torch.inference_mode():
            out[t] = state._run(int(t), s, (None, box, None), z).mask
    return out


def run(data: str, model_name: str, limit: int | None, threads: int, embedding_cache: bool) -> dict:
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
    idx, note = volume_split(ds, model_name)
    idx = idx[:limit] if limit else idx
    modes = ("session", "session-in-extent", "prev-box", "own-box")
    rows = []
    for pos, i, s, target in target_volumes(ds, idx):
        state = model.start_volume(s.image, seed=pos, profile=None, spacing=s.spacing, cache={},
                                   config=VolumeConfig(orthogonal=False))  # the propagation the oracles bound
        pt = click_point(target)
        p = state.click(pt, True)
        z, _ = sample(state.gmm, model.config.n_samples,
                      torch.Generator().manual_seed(int(p.extra["sample_seed"])))
        anchor = int(round(pt[2]))
        in_extent = p.mask & target.any((1, 2))[:, None, None]
        masks = [p.mask, in_extent] + [oracle_volume(state, target, anchor, z, m) for m in modes[2:]]
        row = {"case_id": ds.case_ids[i], "dice": [round(dice(m, target), 5) for m in masks],
               "slices": [int(m.any((1, 2)).sum()) for m in masks], "slices_target": int(target.any((1, 2)).sum())}
        rows.append(row)
        print(row["case_id"], " ".join(f"{m} {d:.3f} ({n}/{row['slices_target']})"
                                       for m, d, n in zip(modes, row["dice"], row["slices"])), flush=True)
    means = {m: float(np.mean([r["dice"][k] for r in rows])) for k, m in enumerate(modes)}
    print(f"{model_name} on {note} of {data} ({len(rows)} volumes), mean 3-D Dice: "
          + ", ".join(f"{m} {v:.4f}" for m, v in means.items()))
    return {"data": data, "model": model_name, "split": note, "mean_dice": means, "cases": rows}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a volume dataset (BraTS case folders, a Decathlon layout, ...)")
    ap.add_argument("--model", default="spa-general", help="shipped model name or model directory")
    ap.add_argument("--limit", type=int, default=None, help="first N held-back volumes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--embedding-cache", action="store_true", help="keep slice embeddings on disk")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    a = ap.parse_args(argv)
    res = run(a.data, a.model, a.limit, a.threads, a.embedding_cache)
    if a.out:
        from clinloop.atomic import atomic_write_text

        atomic_write_text(a.out, json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
