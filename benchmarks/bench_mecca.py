"""Time one MECCA refinement step on a 128³ volume (target: ≤ 1 s on 2 CPU threads).

    .venv/bin/python benchmarks/bench_mecca.py [--size 128] [--threads 2] [--repeats 5] [--out bench.json]
    .venv/bin/python benchmarks/bench_mecca.py --shape 155,240,240 --zoom 4 --downsample 1   # a full BraTS volume

With ``--zoom Z`` the model works on a grid Z times coarser (``MECCAConfig.zoom``, the
BraTS/atrium models): ``refine_s`` is then the step on the coarse grid, and
``hint_step_s`` / ``first_hint_step_s`` include pooling nothing (done once at
``start``) but the hint map, the step, the trilinear upsampling of the probability and
the confidence to the full volume and the advice regions at full size;
``first_hint_step_s`` computes the supervoxels (SLIC on the coarse image) as the first
step of a session does; ``start_s`` is the session start (normalise + pool once).

Measures, with the default 3-D configuration (width 16, convolutions on a 2×
down-sampled grid, see clinloop.models.mecca.pnet) and random weights (timing
does not depend on the weights):

* ``refine_s``: the step itself — state assembly, policy (greedy action per
  voxel), transition p ← clip(p + a), and the action confidence C(s, a);
* ``hint_step_s``: a whole ``Session.hint`` call (hint map + refine + ranking of
  cached SLIC supervoxels into 5 advice regions);
* ``refine_cpu_s``: the step's CPU time over all threads (``/ threads`` estimates
  the wall time on an idle machine when the wall time is inflated by other jobs);
* ``slic_s``: computing the supervoxels once (done at the first step of a
  session and at each new segment count, then cached).

Reported: median over ``--repeats`` after one warm-up. The machine the numbers
come from matters: on a shared machine, say so when you quote them.
"""
from __future__ import annotations

import argparse
import json
import os
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--downsample", type=int, default=2)
    p.add_argument("--shape", default=None, help="D,H,W (default: --size per axis)")
    p.add_argument("--zoom", type=int, default=1)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    from clinloop.interaction.session import Session
    from clinloop.models.mecca import advice
    from clinloop.models.mecca.config import MECCAConfig
    from clinloop.models.mecca.model import MECCAModel

    torch.manual_seed(0)
    cfg = MECCAConfig(method="mecca", ndim=3, width=a.width, conf_width=a.width, downsample=a.downsample, zoom=a.zoom)
    model = MECCAModel(cfg)
    n = a.size
    shape = tuple(int(v) for v in a.shape.split(",")) if a.shape else (n, n, n)
    rng = np.random.default_rng(0)
    vol = rng.normal(size=shape).astype(np.float32)
    t0 = time.perf_counter()
    coarse = model.prepare_image(vol[None])
    start_s = time.perf_counter() - t0
    x = torch.from_numpy(coarse)[None, None]
    prob = torch.full_like(x, 0.5)
    hint = torch.zeros_like(x)

    def med(fn, clock=time.perf_counter):
        fn()
        ts = []
        for _ in range(a.repeats):
            t0 = clock()
            fn()
            ts.append(clock() - t0)
        return float(np.median(ts))

    refine = med(lambda: model.refine(x, prob, hint))
    # CPU seconds of this process (all threads): on a shared machine the wall time
    # above includes waiting for the cores; cpu / threads is the idle-machine estimate
    refine_cpu = med(lambda: model.refine(x, prob, hint), time.process_time)
    t0 = time.perf_counter()
    labels = advice.supervoxels(coarse, cfg.slic_segments, cfg.slic_compactness, cfg.slic_spacing)
    slic_s = time.perf_counter() - t0
    pt = (tuple(v / 2 for v in shape[::-1]), True)
    s = Session(model, vol)
    t0 = time.perf_counter()
    s.hint([pt])  # the session's first step: computes its supervoxels
    first_hint = time.perf_counter() - t0
    s._state._slic = {k: labels for k in range(1, cfg.slic_segments + 1)}  # cached supervoxels
    s._state._slic_full = {}
    hint_step = med(lambda: s.hint([pt]))
    hint_cpu = med(lambda: s.hint([pt]), time.process_time)
    t0 = time.process_time()
    advice.supervoxels(coarse, cfg.slic_segments, cfg.slic_compactness, cfg.slic_spacing)
    slic_cpu = time.process_time() - t0
    res = {"volume": list(shape), "zoom": a.zoom, "coarse": list(coarse.shape), "threads": a.threads,
           "width": a.width, "downsample": a.downsample, "start_s": round(start_s, 3),
           "first_hint_step_s": round(first_hint, 3),
           "hint_step_cpu_s": round(hint_cpu, 3), "slic_cpu_s": round(slic_cpu, 3),
           "refine_s": round(refine, 3), "refine_cpu_s": round(refine_cpu, 3),
           "refine_cpu_per_thread_s": round(refine_cpu / a.threads, 3), "hint_step_s": round(hint_step, 3), "slic_s": round(slic_s, 3),
           "load_average": os.getloadavg()[0], "torch": torch.__version__}
    print(json.dumps(res))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
