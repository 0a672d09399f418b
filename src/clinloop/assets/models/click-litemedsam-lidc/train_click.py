"""click-litemedsam on LIDC, trained on SPA's training patients only
(clinloop.training.spa_data.select_cases(split="train", per_group=1), the
middle slice per nodule, val_fraction 0.2, seed 0), using the trainer's own
functions. Usage: train_click.py OUT BUDGET_SECONDS [MAX_CASES]"""
import copy, json, shlex, sys, time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from clinloop.atomic import atomic_path, atomic_write_text
from clinloop.data import load_dataset
from clinloop.models.litemedsam import build_litemedsam
from clinloop.training import click_litemedsam as C
from clinloop.training.spa_data import select_cases, patient_split

out, budget = Path(sys.argv[1]), float(sys.argv[2])
max_cases = int(sys.argv[3]) if len(sys.argv) > 3 else 400
torch.set_num_threads(2)
torch.manual_seed(0)
t0 = time.time()
data = "/work/shared/data/lidc"
ds = load_dataset(data)
tr = select_cases(ds, "train", val_fraction=0.2, seed=0, per_group=1)
va = select_cases(ds, "val", val_fraction=0.2, seed=0, per_group=1)
sp = patient_split(ds.patient_ids, 0.2, 0)
assert all(sp[ds.patient_ids[i]] == "train" for i in tr) and all(sp[ds.patient_ids[i]] == "val" for i in va)
print(f"{len(tr)} train candidates, {len(va)} val candidates ({time.time()-t0:.0f} s)", file=sys.stderr, flush=True)
net = build_litemedsam(True)
cfg = C.ClickLiteMedSAMConfig(max_cases=max_cases, val_cases=20, base_weights=net.weights_id or "")
rng = np.random.default_rng(0)
emb, targets, train_ids = C.prepare_cases(ds, tr, cfg, net, cfg.max_cases, rng)
val = C.prepare_cases(ds, va[:cfg.val_cases], cfg, net, cfg.val_cases, rng)
t_prep = time.time() - t0
print(f"{len(train_ids)} train / {len(val[2])} val images ready ({t_prep:.0f} s)", file=sys.stderr, flush=True)
# time a few steps on a copy to size the run to the budget
probe = copy.deepcopy(net)
tp = time.time()
C.train(replace(cfg, steps=6, seed=1), probe, emb, targets, None, progress=False)
per_step = (time.time() - tp) / 6
del probe
steps = max(20, int((budget - (time.time() - t0)) / (per_step * 1.08)))  # leave room for the val curves
cfg = replace(cfg, steps=steps, save_every=10**9)
print(f"{per_step:.2f} s/step -> {steps} steps", file=sys.stderr, flush=True)
out.mkdir(parents=True, exist_ok=True)
before = C.evaluate_clicks(net, val[0], val[1], cfg.val_clicks)
history = C.train(cfg, net, emb, targets, out)
after = C.evaluate_clicks(net, val[0], val[1], cfg.val_clicks)
seconds = time.time() - t0
cfg.save(out)
with atomic_path(out / "weights.pt") as tmp:
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in C.decoder_state(net).items()}, tmp)
meta = {"dataset": data, "format": "lidc", "options": {},
        "split": {"method": "clinloop.training.spa_data.select_cases", "val_fraction": 0.2, "seed": 0, "per_group": 1,
                  "note": "SPA's patient split: no patient of evaluate --split val is trained on"},
        "target": "majority_vote", "frame": "LiteMedSAM 256x256 model frame", "weights_dtype": "float16",
        "train_cases": train_ids, "val_cases": val[2],
        "command": "OMP_NUM_THREADS=2 " + shlex.join(["python", *sys.argv]),
        "train_seconds": round(seconds, 1), "seconds_per_step": round(per_step, 3), "threads": torch.get_num_threads()}
atomic_write_text(out / "data.json", json.dumps(meta, indent=2) + "\n")
atomic_write_text(out / "metrics.json", json.dumps({"val_dice_per_click_before": before, "val_dice_per_click_after": after,
                                                    "history": history}, indent=1) + "\n")
print(f"wrote {out} ({seconds:.0f} s); val Dice/click before {before} after {after}", file=sys.stderr)
