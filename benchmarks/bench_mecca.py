"""Time one MECCA refinement step on a 128³ volume (target: ≤ 1 s on 2 CPU threads).

    .venv/bin/python benchmarks/bench_mecca.py [--size 128] [--threads 2] [--repeats 5] [--out bench.json]

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
    cfg = MECCAConfig(method="mecca", ndim=3, width=a.width, conf_width=a.width, downsample=a.downsample)
    model = MECCAModel(cfg)
    n = a.size
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(n, n, n)).astype(np.float32)
    x = torch.from_numpy(vol)[None, None]
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
    labels = advice.supervoxels(vol, cfg.slic_segments, cfg.slic_compactness, cfg.slic_spacing)
    slic_s = time.perf_counter() - t0
    s = Session(model, vol)
    s._state._slic = {k: labels for k in range(1, cfg.slic_segments + 1)}  # cached supervoxels
    pt = ((n / 2, n / 2, n / 2), True)
    hint_step = med(lambda: s.hint([pt]))
    res = {"volume": [n, n, n], "threads": a.threads, "width": a.width, "downsample": a.downsample,
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
