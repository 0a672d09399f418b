"""Seconds per MECCA training iteration on synthetic 3-D volumes, per method and grid
down-sampling: the timing run that fixed ``--downsample 2`` for the shipped 3-D models.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mecca_train_timing.py [--size 32] [--downsample 1,2]
        [--methods mecca,interactive-cnn] [--iterations 3] [--threads 1] [--out timing.json]
    .venv/bin/python benchmarks/mecca_train_timing.py --quick      # size 16, 1 iteration

README ("How the settings were chosen"): 7.6 s/iteration for mecca at downsample 1 against
0.89 s at 2 on 32³ volumes (interactive-cnn 3.4 vs 0.40 s), one thread, batch 4, width 12 —
the settings of the shipped 3-D command. Weights start random and the data are synthetic
(``clinloop.data.synthetic``, fused by majority and cropped like training), so only the time
means anything. Each configuration runs one warm-up iteration, then ``--iterations`` timed
ones; the figure is their mean. Quote the machine and its load with the numbers.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from _results import write_json  # noqa: E402  (benchmarks/ is the script's folder)


def volumes(n: int, size: int):
    import numpy as np

    from clinloop.data.synthetic import make_synthetic_sample
    from clinloop.training.mecca import prepare

    xs, ys = zip(*(prepare(make_synthetic_sample((size + 8,) * 3, seed=i), "majority", size) for i in range(n)))
    return np.stack(xs), np.stack(ys)


def seconds_per_iteration(method: str, downsample: int, xs, ys, iterations: int, width: int, batch: int) -> float:
    from clinloop.models.mecca.config import MECCAConfig
    from clinloop.training.mecca import train_networks

    cfg = MECCAConfig(method=method, ndim=3, size=xs.shape[-1], width=width, downsample=downsample, lr=1e-3,
                      balance_confidence=True)
    train_networks(cfg, xs, ys, None, 1, batch, seed=0, progress=False)  # warm-up
    t0 = time.perf_counter()
    train_networks(cfg, xs, ys, None, iterations, batch, seed=0, progress=False)
    return (time.perf_counter() - t0) / iterations


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=32, help="crop size per axis (default: %(default)s)")
    p.add_argument("--downsample", default="1,2", help="grid down-sampling factors (default: %(default)s)")
    p.add_argument("--methods", default="mecca,interactive-cnn")
    p.add_argument("--iterations", type=int, default=3, help="timed iterations per configuration")
    p.add_argument("--width", type=int, default=12)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write the timings as JSON here")
    p.add_argument("--quick", action="store_true", help="16³, one timed iteration, batch 2")
    a = p.parse_args(argv)
    if a.quick:
        a.size, a.iterations, a.batch = 16, 1, 2
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import torch

    torch.set_num_threads(a.threads)
    xs, ys = volumes(max(8, a.batch), a.size)
    rows = []
    configs = [(m, int(d)) for m in a.methods.split(",") for d in a.downsample.split(",")]
    for k, (m, d) in enumerate(configs, 1):
        print(f"[{k}/{len(configs)}] {m}, downsample {d} ...", end=" ", flush=True)
        s = seconds_per_iteration(m, d, xs, ys, a.iterations, a.width, a.batch)
        print(f"{s:.2f} s/iteration", flush=True)
        rows.append({"method": m, "downsample": d, "seconds_per_iteration": round(s, 3)})
    res = {"size": a.size, "threads": a.threads, "batch": a.batch, "width": a.width, "iterations": a.iterations,
           "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None, "rows": rows}
    print(f"load average {res['load_average']}")
    write_json(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
