"""Forward time of LEXU and its baselines (one image's full sample set, batch 1).

    .venv/bin/python benchmarks/bench_lexu.py [--size 96] [--repeats 30] [--threads 1] [--encoder cnn|tinyvit]

Prints, per method: forward passes, parameters, median seconds per image and
the ratios to the plain U-Net and to the deep ensemble (the LEXU issue's
targets: ≤ 1.2× U-Net, ≤ 0.25× ensemble). Weights are random (time does not
depend on them); widths are the defaults of the encoder. With ``--encoder
tinyvit`` (input fixed at 256²) the feature cache is bypassed, so every pass
includes the frozen TinyViT (shared by the ensemble's members).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from clinloop.models.lexu.config import DEFAULT_WIDTHS, METHODS, TINYVIT_SIZE, LexuConfig, build_network
from clinloop.models.lexu.network import count_parameters


def bench_all(size: int, repeats: int, widths: list[int], encoder: str = "cnn") -> dict[str, tuple[float, int, int]]:
    """Median seconds, passes, parameters per method. Methods are timed in turn
    within every repeat (round robin) so load from other processes hits all alike."""
    nets, xs = {}, {}
    if encoder == "tinyvit":
        from clinloop.models.lexu.network import tinyvit_features

        tinyvit_features().enabled = False  # time the encoder too
    for m in METHODS:
        cfg = LexuConfig(method=m, size=size, widths=widths, encoder=encoder,
                         normalisation="minmax" if encoder == "tinyvit" else "zscore")
        nets[m] = build_network(cfg).eval()
        xs[m] = torch.randn(1, cfg.in_channels, size, size)
    times = {m: [] for m in METHODS}
    with torch.no_grad():
        for r in range(repeats + 3):
            for m in METHODS:
                t0 = time.perf_counter()
                nets[m].uncertainty(nets[m].sample_probs(xs[m]))
                if r >= 3:  # first three rounds: warm-up
                    times[m].append(time.perf_counter() - t0)
    return {m: (float(np.median(times[m])), nets[m].forward_passes, count_parameters(nets[m])) for m in METHODS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=None, help="default: 96 (cnn), 256 (tinyvit)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--widths", default=None)
    ap.add_argument("--encoder", default="cnn", choices=["cnn", "tinyvit"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    widths = DEFAULT_WIDTHS[a.encoder] if a.widths is None else [int(w) for w in a.widths.split(",")]
    if a.size is None:
        a.size = TINYVIT_SIZE if a.encoder == "tinyvit" else 96
    rows = bench_all(a.size, a.repeats, widths, a.encoder)
    base, ens = rows["unet"][0], rows["ensemble"][0]
    print(f"{a.encoder} encoder, input {a.size}x{a.size}, {a.threads} thread(s), median of {a.repeats}")
    print(f"{'method':16s} {'passes':>6s} {'params':>9s} {'ms/image':>9s} {'x unet':>7s} {'x ensemble':>10s}")
    for m, (t, passes, params) in rows.items():
        print(f"{m:16s} {passes:6d} {params:9d} {t * 1e3:9.2f} {t / base:7.2f} {t / ens:10.2f}")


if __name__ == "__main__":
    main()
