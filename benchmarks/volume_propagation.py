"""Propagation options of volumetric SPA sessions, measured side by side: 3-D Dice after
one click for several :class:`clinloop.interaction.propagation.VolumeConfig` variants
(``box_margin``, ``min_area_fraction``, ...), on a model's **training** volumes (to
choose a default without looking at the held-back ones) or its held-back volumes.

Per volume: the spa-3d protocol's click (the interior point of the target's largest
axial slice; seed = position in the list), one session per variant, the slice
embeddings shared between the variants (and kept in the disk cache with
``--embedding-cache``). Prints one line per volume (3-D Dice, slices with a mask /
slices of the target, per variant) and the mean per variant; ``--out`` writes them.

    python benchmarks/volume_propagation.py --data ../shared/data/left_atrium --split train --limit 12 \\
        --variants '[{}, {"box_margin": 0.05}]' --embedding-cache --out runs/propagation-atrium.json

Which volumes are "training" ones is read from the model's ``data.json``
(:func:`clinloop.evaluation.spa3d_protocol.volume_split`).
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def run(data: str, model_name: str, split: str, variants: list[dict], limit: int | None, threads: int,
        embedding_cache: bool) -> dict:
    import torch

    from clinloop.evaluation.spa3d_protocol import click_point, load_volumes, target_volumes, volume_split
    from clinloop.evaluation.spa_protocol import load_method
    from clinloop.interaction.propagation import VolumeConfig
    from clinloop.metrics import dice

    torch.set_num_threads(threads)
    # the propagation alone unless a variant asks for the orthogonal refinement; bad options fail before any work
    configs = [VolumeConfig(**{"orthogonal": False, **v}) for v in variants]
    ds = load_volumes(data)  # as the protocol
    model = load_method("spa", model_name)
    model.disk_cache = embedding_cache
    idx, note = volume_split(ds, model_name, split)
    idx = idx[:limit] if limit else idx
    rows = []
    for pos, i, s, target in target_volumes(ds, idx):
        cache: dict = {}
        row = {"case_id": ds.case_ids[i], "slices_target": int(target.any((1, 2)).sum()), "dice": [], "slices": []}
        for cfg in configs:
            state = model.start_volume(s.image, seed=pos, profile=None, config=cfg, spacing=s.spacing, cache=cache)
            p = state.click(click_point(target), True)
            row["dice"].append(round(dice(p.mask, target), 5))
            row["slices"].append(int(p.mask.any((1, 2)).sum()))
        rows.append(row)
        print(row["case_id"], " ".join(f"{d:.3f} ({n}/{row['slices_target']})" for d, n in zip(row["dice"], row["slices"])),
              flush=True)
    means = [float(np.mean([r["dice"][k] for r in rows])) for k in range(len(variants))]
    for v, m in zip(variants, means):
        print(f"{json.dumps(v):60s} mean 3-D Dice {m:.4f} over {len(rows)} volumes")
    return {"data": data, "model": model_name, "split": note, "variants": variants, "mean_dice": means, "cases": rows}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a volume dataset (BraTS case folders, a Decathlon layout, ...)")
    ap.add_argument("--model", default="spa-general", help="shipped model name or model directory")
    ap.add_argument("--split", choices=("train", "held-back"), default="train")
    ap.add_argument("--variants", default='[{}, {"box_margin": 0.05}]', help="JSON list of VolumeConfig options")
    ap.add_argument("--limit", type=int, default=None, help="first N volumes of the split")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--embedding-cache", action="store_true", help="keep slice embeddings on disk")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    a = ap.parse_args(argv)
    variants = json.loads(a.variants)
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise SystemExit(f"--variants must be a JSON list of objects, got {a.variants!r}")
    res = run(a.data, a.model, a.split, variants, a.limit, a.threads, a.embedding_cache)
    if a.out:
        from pathlib import Path

        from clinloop.atomic import atomic_write_text

        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(a.out, json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
