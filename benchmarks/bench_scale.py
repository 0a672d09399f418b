"""Scale-out throughput: data-parallel training and batch prediction, 1 vs 2 processes.

    .venv/bin/python benchmarks/bench_scale.py [--cases 48] [--epochs 3] [--size 64] [--batch-size 8]
                                               [--procs 1 2] [--out scale.json]

Makes a synthetic canonical dataset (``--cases`` RGB photos of ``--size``², three
raters each) in a temporary folder, then

* trains LEXU (``clinloop train --method lexu ... --nproc N``: N gloo processes
  under torchrun, torch threads = cores // N, the same global batch) and prints
  training throughput in cases/s (training images x epochs / the trainer's
  ``train_seconds``, which excludes interpreter start and rendezvous; the wall
  time with them is printed too);
* runs ``clinloop predict`` with the shipped LEXU model and ``--workers N`` and
  prints cases/s (wall time of the run, including worker start and model load).

Numbers depend on the machine and its load: quote both (see docs/scale.md).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_dataset(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """``n`` canonical cases ``c000``..: an RGB disc photo and three raters' discs of jittered radius."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for k in range(n):
        d = root / f"c{k:03d}"
        d.mkdir(parents=True)
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        r = rng.uniform(0.1, 0.25) * size
        disc = (yy - cy) ** 2 + (xx - cx) ** 2
        img = np.clip(60 + 120 * (disc < r * r)[..., None] + rng.normal(0, 20, (size, size, 3)), 0, 255)
        Image.fromarray(img.astype(np.uint8)).save(d / "image.png")
        for j in range(3):
            rr = r * rng.uniform(0.8, 1.2)
            Image.fromarray(((disc < rr * rr) * 255).astype(np.uint8)).save(d / f"rater_{j}.png")
    return root


def bench_train(data: Path, work: Path, nproc: int, args) -> dict:
    out = work / f"train-{nproc}"
    threads = max(1, (os.cpu_count() or 1) // nproc)
    cmd = [sys.executable, "-c", "import sys; from clinloop.cli import main; sys.exit(main())", "train",
           "--method", "lexu", "--data", str(data), "--out", str(out), "--epochs", str(args.epochs),
           "--size", str(args.size), "--batch-size", str(args.batch_size), "--threads", str(threads),
           "--held-out-fraction", "0.25", "--nproc", str(nproc)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"training with {nproc} processes failed:\n{r.stderr[-3000:]}")
    info = json.loads((out / "data.json").read_text())
    n = info["n_train_images"] * args.epochs
    hist = json.loads((out / "metrics.json").read_text())["history"]
    return {"processes": nproc, "threads_each": threads, "cases": n, "train_seconds": info["train_seconds"],
            "wall_seconds": round(wall, 1), "cases_per_second": round(n / info["train_seconds"], 2),
            "final_loss": hist[-1]["loss"]}


def bench_predict(data: Path, work: Path, workers: int) -> dict:
    import clinloop

    t0 = time.perf_counter()
    s = clinloop.predict(data, work / f"predict-{workers}", workers=workers, progress=False)
    wall = time.perf_counter() - t0
    return {"workers": workers, "cases": s["ok"], "errors": len(s["errors"]), "wall_seconds": round(wall, 2),
            "cases_per_second": round(s["ok"] / wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", help="write the results as JSON")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = make_dataset(work / "data", args.cases, args.size)
        res = {"cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "settings": vars(args),
               "train": [bench_train(data, work, n, args) for n in args.procs],
               "predict": [bench_predict(data, work, n) for n in args.procs]}
    for r in res["train"]:
        print(f"train   {r['processes']} process(es) x {r['threads_each']} thread(s): {r['cases_per_second']:.2f} cases/s "
              f"({r['cases']} cases in {r['train_seconds']} s; {r['wall_seconds']} s with start-up; "
              f"final loss {r['final_loss']:.4f})")
    for r in res["predict"]:
        print(f"predict {r['workers']} worker(s): {r['cases_per_second']:.2f} cases/s ({r['cases']} cases in "
              f"{r['wall_seconds']} s, with worker start-up)")
    print(f"({res['cpu_count']} cores, load average {res['load_average'][0]:.1f})")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
