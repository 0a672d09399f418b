"""Time of one SPA interaction iteration (after set-image): naive vs optimised.

    .venv/bin/python benchmarks/bench_spa.py [--threads 2] [--samples 48] [--repeats 5] [--naive-samples 4]
        [--dice-cases 0 --data /path/lidc --model DIR]

Target (SPA issue): <= 0.2 s per iteration for N = 48, K = 4, a 256² input, 2 threads.

Paths timed (one iteration = prompt encoder + p_theta + N samples + y_app + K-means candidates + masks at input size):

* ``naive``          the paper's literal form: z_n concatenated with e_x (256+D channels), three 3x3
                     convs at width 256, then the full SAM mask decoder once per sample (batched).
* ``split-naive``    the same with the first conv split (image half once per image, latent half a
                     basis x z): still N decoder passes and N x two 3x3 convs at width 256.
* ``optimised``      our ``tail`` path: decoder once, conditioning at width 32 on the decoded tokens
                     with 1x1 later layers, a per-sample logit offset at 64x64.

The naive paths are measured at ``--naive-samples`` and extrapolated linearly to N (their cost is
per sample). K-means: our torch implementation vs scikit-learn's KMeans on the same N masks.
Weights are random except the pretrained LiteMedSAM (time does not depend on them).

With ``--dice-cases n``: Dice@1 (centre click, the rater-majority target) on the first n validation
LIDC slices for the optimised model from ``--model`` and for both paths at initialisation (where
they coincide with the pretrained decoder, see tests/test_spa_model.py).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def one_iteration(net, e_x, n, k, info, gen_seed=0):
    from clinloop.models.litemedsam.preprocess import postprocess_logits
    from clinloop.models.spa import candidates as cand

    pts = (torch.tensor([[[128.0, 128.0]]]), torch.tensor([[1]]))
    sparse, dense = net.encode_interaction(pts, None)
    gmm = net.distribution(e_x, sparse, dense)
    logits, _, _ = net.gen_mask(e_x, sparse, dense, gmm, n, torch.Generator().manual_seed(gen_seed))
    ys = logits > 0
    p, _ = cand.aggregate(ys)
    c = cand.representative_candidates(ys, k, seed=gen_seed, pool=2)
    postprocess_logits(p[None], info)
    postprocess_logits(c.float(), info)


def timed(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=48)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--naive-samples", type=int, default=4)
    ap.add_argument("--dice-cases", type=int, default=0)
    ap.add_argument("--data", default=None)
    ap.add_argument("--model", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from clinloop.models.litemedsam import build_litemedsam
    from clinloop.models.litemedsam.preprocess import resize_info
    from clinloop.models.spa.config import SPAConfig
    from clinloop.models.spa.model import SPANet

    bb = build_litemedsam(True)
    info = resize_info((256, 256))
    torch.manual_seed(0)
    e_x = torch.randn(1, 256, 64, 64)
    opt = SPANet(SPAConfig(n_samples=a.samples), bb).eval()
    naive = SPANet(SPAConfig(path="embedding"), bb).eval()
    for p in naive.conditioning.conv3.parameters():  # non-zero so nothing is skipped
        torch.nn.init.normal_(p, std=0.01)
    print(f"threads={a.threads}  N={a.samples}  K={a.candidates}  input 256x256  repeats={a.repeats}")
    with torch.inference_mode():
        one_iteration(opt, e_x, a.samples, a.candidates, info)  # warm-up
        t_opt = timed(lambda: one_iteration(opt, e_x, a.samples, a.candidates, info), a.repeats)
        # breakdown of the optimised path
        pts = (torch.tensor([[[128.0, 128.0]]]), torch.tensor([[1]]))
        sp, de = opt.encode_interaction(pts, None)
        t_dec = timed(lambda: opt.decode_base(e_x, sp, de), a.repeats)
        base = opt.decode_base(e_x, sp, de)
        z = torch.randn(a.samples, opt.config.latent_dim)
        t_tail = timed(lambda: opt.sample_logits(e_x, sp, de, z, base), a.repeats)
        ys = opt.sample_logits(e_x, sp, de, z, base) > 0
        from clinloop.models.spa import candidates as cand

        t_km = timed(lambda: cand.representative_candidates(ys, a.candidates, seed=0), a.repeats)
        t_km2 = timed(lambda: cand.representative_candidates(ys, a.candidates, seed=0, pool=2), a.repeats)
        try:
            from sklearn.cluster import KMeans

            flat = ys.flatten(1).float().numpy()
            t_sk = timed(lambda: KMeans(a.candidates, n_init=1, random_state=0).fit(flat), a.repeats)
        except ImportError:  # pragma: no cover
            t_sk = float("nan")
        # naive paths at a few samples, extrapolated
        ns = a.naive_samples
        zs = torch.randn(ns, naive.config.latent_dim)
        cond = naive.conditioning
        dec = naive.backbone.mask_decoder
        pe = naive.backbone.prompt_encoder.get_dense_pe()

        def naive_concat():
            e_xn = cond.forward_concat(e_x, zs)
            dec(e_xn, pe, sp.expand(ns, -1, -1), de, False)

        def naive_split():
            e_xn = cond(e_x, zs)
            dec(e_xn, pe, sp.expand(ns, -1, -1), de, False)

        t_nc = timed(naive_concat, max(1, a.repeats // 2))
        t_ns = timed(naive_split, max(1, a.repeats // 2))
        t_cond_only = timed(lambda: cond(e_x, zs), max(1, a.repeats // 2))
    per = a.samples / ns
    print(f"optimised (tail) iteration:        {t_opt:.3f} s   [target <= 0.2 s]")
    print(f"  decoder once (transformer+upscale): {t_dec:.3f} s")
    print(f"  N conditioning + offsets:          {t_tail:.3f} s")
    print(f"  K-means (ours, torch):             {t_km:.3f} s   pooled 2x2 (used): {t_km2:.3f} s   "
          f"scikit-learn KMeans(n_init=1): {t_sk:.3f} s")
    print(f"naive concat-conv + N decoders:    {t_nc:.3f} s at N={ns}  -> {t_nc * per:.1f} s at N={a.samples}")
    print(f"split first conv + N decoders:     {t_ns:.3f} s at N={ns}  -> {t_ns * per:.1f} s at N={a.samples}"
          f"   (of which conditioning {t_cond_only:.3f} s)")
    print(f"speed-up optimised vs naive:       {t_nc * per / t_opt:.0f}x")

    if a.dice_cases:
        dice_report(a, bb)


def dice_report(a, bb) -> None:
    from clinloop.data import load_dataset
    from clinloop.data.fusion import majority_vote
    from clinloop.interaction.users import dice, largest_error_click
    from clinloop.models.spa.config import SPAConfig
    from clinloop.models.spa.model import SPAModel, SPANet, load_spa
    from clinloop.training.spa_data import select_cases

    ds = load_dataset(a.data)
    idx = select_cases(ds, "val", limit=a.dice_cases, per_group=1)
    models = {"optimised-init": SPAModel(SPANet(SPAConfig(n_samples=a.samples), bb)),
              "naive-init": SPAModel(SPANet(SPAConfig(path="embedding", n_samples=a.naive_samples), bb))}
    if a.model:
        models["optimised-trained"] = load_spa(a.model)
    res = {k: [] for k in models}
    for i in idx:
        s = ds[i]
        y = majority_vote(s.masks)
        (pt, pos) = largest_error_click(y, None)
        for k, m in models.items():
            st = m.start(s.image, seed=0, profile=None)
            res[k].append(dice(st.click(pt, pos).mask, y))
    for k, v in res.items():
        print(f"Dice@1 {k:20s} {np.mean(v):.3f}  (n={len(v)} val slices)")


if __name__ == "__main__":
    main()
