"""Train the shipped ``click-litemedsam-lidc`` model: LiteMedSAM's prompt encoder + mask
decoder fine-tuned with simulated clicks on SPA's LIDC training slices.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/train_click_litemedsam_lidc.py \\
        --out click-litemedsam-lidc --steps 181            # the shipped model's settings
    .venv/bin/python benchmarks/train_click_litemedsam_lidc.py --out /tmp/c --max-cases 4 --val-cases 2 --steps 2   # smoke run

Why not ``clinloop train --method click-litemedsam``: that trainer splits with
``clinloop.data.splits.split_by_patient`` and draws random slices, while this model
had to be trained on exactly SPA's training slices
(``clinloop.training.spa_data.select_cases(split="train", val_fraction=0.2, seed=0,
per_group=1)``: the middle slice of each nodule of the training patients) so that no
patient of ``clinloop evaluate --protocol spa --split val`` is trained on. This script
calls the trainer's own ``prepare_cases`` / ``train`` / ``evaluate_clicks`` with that
selection.

The shipped run sized its step count to a wall budget (``--budget 690``: 3.03 s/step
measured on 2 cores -> 181 steps); ``--steps 181`` gives the same run without timing
(the timing probe trains a copy of the network with its own seed, so it does not change
the result). Writes ``config.json``, ``weights.pt`` (int8 deltas against the pretrained
checkpoint, the format the shipped folder holds; the original run wrote fp16 and was
converted, same validation figures), ``data.json`` and ``metrics.json`` into ``--out``
and prints the held-out Dice per click before/after.
"""
from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/lidc", help="LIDC folder (default: %(default)s)")
    p.add_argument("--out", required=True, help="model folder to write")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, default=None, help="training steps (the shipped model: 181)")
    g.add_argument("--budget", type=float, default=None,
                   help="wall-clock budget in seconds; the step count is sized to it (the original run: 690)")
    p.add_argument("--max-cases", type=int, default=400, help="training slices (default: %(default)s)")
    p.add_argument("--val-cases", type=int, default=20, help="held-out slices for the click-Dice curve")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.steps is None and a.budget is None:
        p.error("give --steps N (the shipped model: 181) or --budget SECONDS")
    if a.steps is not None and a.steps < 1:
        p.error(f"--steps must be >= 1, got {a.steps}")
    if a.max_cases < 1 or a.val_cases < 1:
        p.error("--max-cases and --val-cases must be >= 1")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    import numpy as np
    import torch

    from clinloop.atomic import atomic_write_text
    from clinloop.data import load_dataset
    from clinloop.models.litemedsam import build_litemedsam
    from clinloop.models.litemedsam.compact import write_weights
    from clinloop.training import click_litemedsam as C
    from clinloop.training.spa_data import patient_split, select_cases

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.time()
    ds = load_dataset(a.data)
    tr = select_cases(ds, "train", val_fraction=0.2, seed=0, per_group=1)
    va = select_cases(ds, "val", val_fraction=0.2, seed=0, per_group=1)
    sp = patient_split(ds.patient_ids, 0.2, 0)
    if any(sp[ds.patient_ids[i]] != "train" for i in tr) or any(sp[ds.patient_ids[i]] != "val" for i in va):
        raise RuntimeError("select_cases and patient_split disagree: the training slices are not SPA's training patients")
    print(f"{len(tr)} train candidates, {len(va)} val candidates ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    net = build_litemedsam(True)
    cfg = C.ClickLiteMedSAMConfig(max_cases=a.max_cases, val_cases=a.val_cases, seed=a.seed,
                                  base_weights=net.weights_id or "")
    rng = np.random.default_rng(a.seed)
    emb, targets, train_ids = C.prepare_cases(ds, tr, cfg, net, cfg.max_cases, rng)
    val = C.prepare_cases(ds, va[:cfg.val_cases], cfg, net, cfg.val_cases, rng)
    print(f"{len(train_ids)} train / {len(val[2])} val images ready ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    per_step = None
    if a.steps is not None:
        steps = a.steps
    else:  # time a few steps on a copy to size the run to the budget
        probe = copy.deepcopy(net)
        tp = time.time()
        C.train(replace(cfg, steps=6, seed=1), probe, emb, targets, None, progress=False)
        per_step = (time.time() - tp) / 6
        del probe
        steps = max(20, int((a.budget - (time.time() - t0)) / (per_step * 1.08)))  # room for the val curves
        print(f"{per_step:.2f} s/step -> {steps} steps", file=sys.stderr, flush=True)
    cfg = replace(cfg, steps=steps, save_every=10**9)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    before = C.evaluate_clicks(net, val[0], val[1], cfg.val_clicks)
    history = C.train(cfg, net, emb, targets, out)
    after = C.evaluate_clicks(net, val[0], val[1], cfg.val_clicks)
    seconds = time.time() - t0
    cfg.save(out)
    write_weights(out / "weights.pt", C.decoder_state(net), compact=True)
    meta = {"dataset": a.data, "format": "lidc", "options": {},
            "split": {"method": "clinloop.training.spa_data.select_cases", "val_fraction": 0.2, "seed": 0, "per_group": 1,
                      "note": "SPA's patient split: no patient of evaluate --split val is trained on"},
            "target": "majority_vote", "frame": "LiteMedSAM 256x256 model frame", "weights_format": "int8 deltas",
            "train_cases": train_ids, "val_cases": val[2],
            "command": f"OMP_NUM_THREADS={a.threads} " + shlex.join(["python", *([sys.argv[0]] + list(argv if argv is not None else sys.argv[1:]))]),
            "train_seconds": round(seconds, 1), "seconds_per_step": None if per_step is None else round(per_step, 3),
            "threads": torch.get_num_threads()}
    atomic_write_text(out / "data.json", json.dumps(meta, indent=2) + "\n")
    atomic_write_text(out / "metrics.json", json.dumps({"val_dice_per_click_before": before, "val_dice_per_click_after": after,
                                                        "history": history}, indent=1) + "\n")
    print(f"wrote {out} ({seconds:.0f} s, {steps} steps)")
    print("val Dice per click before: " + " / ".join(f"{v:.3f}" for v in before))
    print("val Dice per click after:  " + " / ".join(f"{v:.3f}" for v in after))
    return 0


if __name__ == "__main__":
    sys.exit(main())
