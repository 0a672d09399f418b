"""Speed of one click on a volume (issue 13 "Speed"): set-image per slice for each encoder
option, and click -> full 3-D mask for 10-, 40- and 100-slice structures, in one run.

    PYTHONPATH=src python benchmarks/bench_volume_click.py [--quick] [--model spa-lidc] [--threads 2]
        [--lengths 10,40,100] [--ahead 2] [--out bench_volume_click.json]

(a) **Set-image** (preprocess + TinyViT encoder + float16 rounding, as ``embed`` does) of a
256² slice for each encoder option, on 1 and ``--threads`` threads: torch eager, ONNX Runtime
at graph optimisation level basic / extended / all (sequential execution; ``all`` is what
:mod:`clinloop.models.litemedsam.encoder_runtime` runs) and ``all`` with parallel execution.
The ONNX file is the runtime's own cached export. Medians over interleaved rounds (each round
runs every option once, so machine load hits them alike); the first round is a warm-up.

(b) **Click -> 3-D mask**: a synthetic tube (bright, radius 8-18 px, its centre drifting
sideways) spanning L slices of a ``(L + 8, 256, 256)`` volume in noise, one positive click at
its middle slice's centre, through ``model.start_volume`` (:mod:`clinloop.models.spa.volume`)
with the process's encoder runtime (``auto``: ONNX Runtime when installed):

* ``cold``: a fresh session, nothing cached (embedding disk cache off): encoding included;
* ``warm``: a second session on the first one's slice cache: decoding only;
* ``cold+ahead``: a fresh session with ``VolumeConfig(encode_ahead=--ahead)`` (a background
  thread encodes the slices beyond the propagation frontier); its masks are checked
  bit-identical to ``cold``'s;
* ``cold-axial``: a fresh session without the orthogonal refinement
  (``VolumeConfig(orthogonal=False)``: the propagation alone, the default before 2026-12-04).

Reported per L: seconds, slices in the mask, slices encoded (and by the worker), 3-D Dice to
the tube. ``--quick``: 2 timing rounds for (a), one run per case for (b) and ``cold+ahead``
only for L <= 40 (the default: 5 rounds, the median of 3 runs, every L). Timings depend on the machine and its load: the 1-minute load average is
recorded with every figure.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_json  # noqa: E402


def load() -> float:
    return round(os.getloadavg()[0], 2)


def tube(length: int, size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(length + 8, size, size)`` float32 volume and its bool structure (slices 4 .. length + 3)."""
    d = length + 8
    yy, xx = np.mgrid[:size, :size]
    inside = np.zeros((d, size, size), bool)
    for k in range(length):
        r = 8 + 10 * np.sin(np.pi * (k + 0.5) / length) ** 0.5
        cx = size / 2 + 15 * np.sin(2 * np.pi * k / max(length, 20))
        inside[k + 4] = (yy - size / 2) ** 2 + (xx - cx) ** 2 <= r * r
    rng = np.random.default_rng(seed)
    return (100 + 120 * inside + rng.normal(0, 15, inside.shape)).astype(np.float32), inside


# ------------------------------------------------------------------ (a) encoder options
def encoder_options(enc, threads: int) -> dict:
    """name -> {threads: callable (1, 3, 256, 256) -> (1, 256, 64, 64)}."""
    from bench_encoder import ort_session

    from clinloop.models.litemedsam import encoder_runtime as er

    ths = sorted({1, threads})
    opts = {"torch": {t: enc for t in ths}}
    if not er.onnxruntime_available():
        print("onnxruntime is not installed: torch eager only")
        return opts
    path = er.ensure_model(enc)  # the runtime's cached export (made once per weights)
    for level in ("basic", "extended", "all"):
        opts[f"onnx-{level}"] = {t: ort_session(path, t, level) for t in ths}
    opts["onnx-all-parallel"] = {t: ort_session(path, t, "all", parallel=True) for t in ths}
    return opts


def set_image_seconds(fn, image: np.ndarray, threads: int) -> float:
    from clinloop.models.litemedsam.preprocess import preprocess

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    x = preprocess(image[None])[0][None].float()
    with torch.no_grad():
        fn(x).to(torch.float16)
    return time.perf_counter() - t0


def bench_encoders(enc, slices: list[np.ndarray], threads: int, rounds: int) -> list[dict]:
    opts = encoder_options(enc, threads)
    times: dict[tuple[str, int], list[float]] = {(n, t): [] for n in opts for t in opts[n]}
    for r in range(rounds + 1):  # round 0: warm-up
        la = load()
        for (n, t) in times:
            dt = set_image_seconds(opts[n][t], slices[r % len(slices)], t)
            if r:
                times[(n, t)].append(dt)
        print(f"  encoder round {r}: load {la} -> {load()}", flush=True)
    torch.set_num_threads(threads)
    return [{"option": n, "threads": t, "s_median": statistics.median(v), "s_min": min(v), "rounds": len(v)}
            for (n, t), v in times.items()]


# ------------------------------------------------------------------ (b) click -> 3-D mask
def click_once(model, vol, point, cache: dict, ahead: int, orthogonal: bool = True) -> tuple[object, float]:
    from clinloop.interaction.propagation import VolumeConfig

    st = model.start_volume(vol[None], seed=0, config=VolumeConfig(encode_ahead=ahead, orthogonal=orthogonal),
                            cache=cache)
    t0 = time.perf_counter()
    p = st.click(point, True)
    sec = time.perf_counter() - t0
    if st._ahead is not None:  # let the worker finish its slice before the next timing
        st._ahead.cancel(wait=True)
    return p, sec


def bench_clicks(model, lengths: list[int], ahead: int, repeats: int, ahead_lengths: set[int],
                 rows: list[dict] | None = None, save=lambda: None) -> list[dict]:
    """Per length: ``cold`` (fresh cache), ``warm`` (again on that cache) and, for lengths in
    ``ahead_lengths``, ``cold+ahead`` (fresh cache, encode-ahead on); medians of ``repeats``.
    Appends to ``rows`` and calls ``save()`` after each length (a long run keeps what it measured)."""
    from clinloop.metrics import dice

    rows = [] if rows is None else rows
    for length in lengths:
        vol, inside = tube(length)
        mid = 4 + length // 2
        ys, xs = np.nonzero(inside[mid])
        point = (float(np.round(xs.mean())), float(np.round(ys.mean())), float(mid))
        results: dict[str, list] = {"cold": [], "warm": [], "cold+ahead": [], "cold-axial": []}
        for _ in range(repeats):
            cache: dict = {}
            la = load()
            results["cold"].append((*click_once(model, vol, point, cache, 0), la))
            la = load()
            results["warm"].append((*click_once(model, vol, point, cache, 0), la))
            if length in ahead_lengths:
                la = load()
                results["cold+ahead"].append((*click_once(model, vol, point, {}, ahead), la))
            la = load()
            results["cold-axial"].append((*click_once(model, vol, point, {}, 0, orthogonal=False), la))
        ref = results["cold"][0][0].mask
        for mode, runs in results.items():
            if not runs:
                continue
            p = runs[-1][0]
            secs = [r[1] for r in runs]
            row = {"slices": length, "mode": mode, "s_median": statistics.median(secs), "s_all": secs,
                   "slices_mask": int(p.mask.any((1, 2)).sum()), "encoded": p.extra["encoded_slices"],
                   "encoded_ahead": p.extra.get("encoded_ahead"), "dice3d": round(dice(p.mask, inside), 4),
                   "same_mask_as_cold": all(np.array_equal(r[0].mask, ref) for r in runs),
                   "load_before": [r[2] for r in runs], "load_after": load()}
            rows.append(row)
            print(f"  L={length:3d} {mode:<10} {row['s_median']:7.1f} s  mask on {row['slices_mask']:3d} slices, "
                  f"{row['encoded']} encoded (worker {row['encoded_ahead']}), Dice {row['dice3d']:.3f}, "
                  f"same mask {row['same_mask_as_cold']}, load {row['load_before']} -> {row['load_after']}", flush=True)
        save()
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 encoder rounds, one run per click case")
    ap.add_argument("--model", default="spa-lidc")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lengths", default="10,40,100", help="structure lengths in slices")
    ap.add_argument("--ahead", type=int, default=2, help="VolumeConfig.encode_ahead for the cold+ahead rows")
    ap.add_argument("--out", default=None, help="JSON file")
    a = ap.parse_args(argv)
    lengths = [int(v) for v in a.lengths.split(",") if v.strip()]
    if not lengths or min(lengths) < 1 or a.ahead < 1 or a.threads < 1:
        raise SystemExit("--lengths must be positive integers, --ahead and --threads >= 1")
    torch.set_num_threads(a.threads)
    import clinloop
    from clinloop.models.litemedsam import encoder_runtime as er

    model = clinloop.load_model(a.model)
    model.disk_cache = False  # cold = nothing cached: time the encoding too
    enc = model.net.backbone.image_encoder.eval()
    vol, _ = tube(10)
    print(f"(a) set-image per 256² slice (load {load()})", flush=True)
    enc_rows = bench_encoders(enc, [vol[6], vol[8], vol[10]], a.threads, 2 if a.quick else 5)
    for r in enc_rows:
        print(f"  {r['option']:<18} {r['threads']} thr  {r['s_median']:.3f} s (min {r['s_min']:.3f})")
    runtime = er.resolve(enc)
    print(f"(b) click -> full 3-D mask, {a.model}, encoder runtime {runtime}, {a.threads} threads", flush=True)
    ahead_lengths = {v for v in lengths if v <= 40} if a.quick else set(lengths)
    out = {"model": a.model, "threads": a.threads, "runtime": runtime, "quick": a.quick, "ahead": a.ahead,
           "torch": torch.__version__, "encoders": enc_rows, "clicks": [], "complete": False,
           "note": "seconds on the machine as it was (load averages recorded per row)"}
    write_json(a.out, out)
    bench_clicks(model, lengths, a.ahead, 1 if a.quick else 3, ahead_lengths, out["clicks"],
                 lambda: write_json(a.out, out))
    out["complete"], out["uptime_end"] = True, os.popen("uptime").read().strip()
    print(out["uptime_end"])
    write_json(a.out, out)
    return out


if __name__ == "__main__":
    main()
