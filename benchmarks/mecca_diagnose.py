"""Why MECCA's Dice was low: the P-Net alone on BraTS / the atrium, and an oracle hint step.

    OMP_NUM_THREADS=1 python benchmarks/mecca_diagnose.py --data ../shared/data/brats2018_flair \
        --zoom 4 --norm nonzero --loss bce-dice --minutes 4 --out diag.json

Trains the non-interactive P-Net (``clinloop.models.mecca.pnet.SegmentationNet``,
the backbone of every MECCA method; input: the image only) on the training
patients of ``--data`` (patient split of ``clinloop.training.mecca_data``,
``--held-out-fraction``) for ``--minutes`` of wall time, on volumes
average-pooled by ``--zoom`` (``clinloop.models.mecca.volumes``) and normalised
with ``--norm``; the loss is ``--loss``:

* ``balanced-bce`` — the BCE with class-balanced weights the shipped models use
  (``clinloop.training.mecca.balanced_weights``);
* ``bce-dice`` — plain BCE + soft Dice (``clinloop.training.mecca.soft_dice_loss``).

Every ``--eval-every`` seconds it prints the held-back Dice of the thresholded
prediction (coarse grid and, upsampled, at full resolution). At the end it runs
an **oracle hint step** on the held-back cases: 5 simulated clicks per step on
wrongly predicted boundary points (``clinloop.models.mecca.hints.simulate_clicks``,
the simulated user of the protocol) and a perfect local correction — every
voxel within ``--oracle-radius`` coarse voxels of a click takes its label — for
5 steps: the most a refinement step that only acts near the clicks can add.
The same oracle from the paper's start ``p = 0.5`` (nothing predicted) shows
what the hints alone give without an initial segmentation, and from the best
single intensity threshold (a non-learned reference, chosen on the training
cases) what they add to a good one. ``--minutes 0`` skips the training (the
resolution ceiling, the threshold and the oracles only); ``--pnet MODEL`` then runs the
oracle from a trained P-Net's held-back prediction (e.g. the shipped ``pnet-atrium``:
how far local corrections at the protocol's clicks can take its start; with the model's
``flip_average`` / ``one_component`` when its config sets them).
"""
from __future__ import annotations

import argparse
import json
import os
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--zoom", type=int, default=4)
    p.add_argument("--norm", default="nonzero", choices=("image", "nonzero"))
    p.add_argument("--loss", default="bce-dice", choices=("balanced-bce", "bce-dice"))
    p.add_argument("--crop", default="", help="training crop D,H,W on the coarse grid around the label "
                                              "(default: whole volume; held-back cases: always whole)")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--eval-every", type=float, default=60.0)
    p.add_argument("--held-out-fraction", type=float, default=0.25)
    p.add_argument("--oracle-radius", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pnet", default=None, help="a trained P-Net (mecca-unet folder or shipped name, e.g. "
                                               "pnet-atrium): its held-back prediction replaces the trained one "
                                               "(use with --minutes 0 and the model's --zoom/--norm/split)")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import numpy as np
    import torch
    import torch.nn.functional as F

    from clinloop.data import load_dataset
    from clinloop.metrics import dice
    from clinloop.models.mecca.hints import simulate_clicks
    from clinloop.models.mecca.pnet import SegmentationNet
    from clinloop.models.mecca.pnet_inference import pnet_probability
    from clinloop.models.mecca.volumes import normalise, upsample, zoom_image, zoom_label
    from clinloop.training.mecca import balanced_weights, soft_dice_loss
    from clinloop.training.mecca_data import prepare_volume, split_patients

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    ds = load_dataset(a.data)
    tr, va = split_patients(ds, a.held_out_fraction, a.seed)
    crop = tuple(int(v) for v in a.crop.split(",")) if a.crop else None
    t0 = time.time()

    def load(idx, crop):
        xs, ys, full = [], [], []
        for i in idx:
            s = ds[int(i)]
            x, y = prepare_volume(s, "majority", zoom=a.zoom, norm=a.norm, crop=crop)
            xs.append(x)
            ys.append(y)
            full.append(np.asarray(s.masks[0], bool))
        return xs, ys, full

    xtr, ytr, ftr = load(tr, crop)  # training crops around the label
    xva, yva, fva = load(va, None)  # held-back: whole volumes

    # resolution ceiling: the label itself, pooled by --zoom and upsampled back
    ceiling = [dice(upsample(torch.from_numpy(zoom_image(f.astype(np.float32), a.zoom))[None, None],
                             f.shape, a.zoom)[0, 0].numpy() > 0.5, f) for f in ftr + fva]
    # a non-learned reference: the best single intensity threshold on the training cases
    ths = np.arange(-1.0, 4.01, 0.25)
    full_tr = [zoom_image(normalise(ds[int(i)].image, a.norm), a.zoom) for i in tr]
    tr_d = [[dice(x > t, y) for t in ths] for x, y in zip(full_tr, [zoom_label(f, a.zoom) for f in ftr])]
    best_t = float(ths[int(np.argmax(np.mean(tr_d, 0)))])
    thr_dice = float(np.mean([dice(x[0] > best_t, y) for x, y in zip(xva, yva)]))
    print(f"resolution ceiling {np.mean(ceiling):.4f}; threshold z > {best_t}: held-back Dice {thr_dice:.4f}", flush=True)
    print(f"{len(xtr)} training / {len(xva)} held-back cases, coarse shape {xtr[0].shape[1:]}, "
          f"loaded in {time.time() - t0:.0f} s", flush=True)
    net = SegmentationNet(ndim=xtr[0].ndim - 1, in_channels=1, width=a.width)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)

    def loss_fn(logit, y):
        if a.loss == "balanced-bce":
            return F.binary_cross_entropy_with_logits(logit, y, weight=balanced_weights(y))
        return F.binary_cross_entropy_with_logits(logit, y) + soft_dice_loss(torch.sigmoid(logit), y)

    @torch.no_grad()
    def evaluate():
        net.eval()
        dc, df, probs = [], [], []
        for x, y, yf in zip(xva, yva, fva):
            pr = pnet_probability(net, torch.from_numpy(x)[None], *refine)
            probs.append(pr[0, 0].numpy())
            dc.append(dice(pr[0, 0].numpy() > 0.5, y))
            if yf is not None:
                df.append(dice(upsample(pr, yf.shape, a.zoom)[0, 0].numpy() > 0.5, yf))
        net.train()
        return float(np.mean(dc)), (float(np.mean(df)) if df else None), probs

    refine = (False, False)  # a --pnet model's flip_average, one_component (clinloop.models.mecca.pnet_inference)
    curve, it, t_train, next_eval = [], 0, time.time(), a.eval_every
    while time.time() - t_train < a.minutes * 60:
        b = rng.choice(len(xtr), size=min(a.batch, len(xtr)), replace=False)
        x = torch.from_numpy(np.stack([xtr[i] for i in b]))
        y = torch.from_numpy(np.stack([ytr[i] for i in b]).astype(np.float32))[:, None]
        if rng.random() < 0.5:  # left-right flip
            x, y = x.flip(-1), y.flip(-1)
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        it += 1
        el = time.time() - t_train
        if el >= next_eval:
            dc, df, _ = evaluate()
            curve.append({"seconds": round(el), "iterations": it, "dice_coarse": round(dc, 4),
                          "dice_full": None if df is None else round(df, 4), "loss": round(float(loss.detach()), 4)})
            print(json.dumps(curve[-1]), flush=True)
            next_eval += a.eval_every
    if a.pnet:  # the oracle from a shipped P-Net's start instead of the network trained here
        from clinloop.models import registry
        from clinloop.models.mecca.model import load_mecca

        loaded = load_mecca(registry.resolve_model_dir(a.pnet))
        net, refine = loaded.nets["net"], (loaded.cfg.flip_average, loaded.cfg.one_component)
    dc, df, probs = evaluate()

    def oracle(start_masks):
        rows = []
        for m0, y in zip(start_masks, yva):
            m, ys = m0.copy(), []
            grids = np.indices(y.shape)
            for _ in range(5):
                for pt, _pos in simulate_clicks(m, y, 5, rng):
                    c = np.asarray(pt[::-1])[:, None]
                    near = ((grids.reshape(y.ndim, -1) - c) ** 2).sum(0) <= a.oracle_radius ** 2
                    near = near.reshape(y.shape)
                    m[near] = y[near]
                ys.append(dice(m, y))
            rows.append(ys)
        return np.mean(rows, 0).round(4).tolist()

    res = {"data": a.data, "pnet": a.pnet, "zoom": a.zoom, "norm": a.norm, "loss": a.loss, "width": a.width,
           "crop": crop,
           "iterations": it, "minutes": a.minutes, "threads": a.threads, "n_train": len(xtr), "n_held_back": len(xva),
           "held_back_dice_coarse": round(dc, 4), "held_back_dice_full": None if df is None else round(df, 4),
           "resolution_ceiling_dice": round(float(np.mean(ceiling)), 4),
           "threshold": best_t, "threshold_held_back_dice": round(thr_dice, 4), "curve": curve, "oracle_radius": a.oracle_radius,
           "oracle_dice_per_step_from_pnet": oracle([pr > 0.5 for pr in probs]),
           "oracle_dice_per_step_from_empty": oracle([np.zeros_like(y) for y in yva]),
           "oracle_dice_per_step_from_threshold": oracle([x[0] > best_t for x in xva]),
           "load_average": os.getloadavg()[0]}
    print(json.dumps(res), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
