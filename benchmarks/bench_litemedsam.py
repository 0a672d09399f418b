"""LiteMedSAM CPU timings (2 threads, inference mode, median of several runs).

    .venv/bin/python benchmarks/bench_litemedsam.py [--repeats 5] [--threads 2]

Prints: encoder time per 256² image; one decoder pass (box prompt); 48
sequential decoder passes; one call decoding 48 prompt sets that share one
embedding, for several chunk sizes (``MaskDecoder.chunk_size``). Uses the
pretrained weights when installed, else random ones (same cost). The load
average is printed because the figures are only meaningful on an idle machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunks", default="1,4,8,16,48", help="decoder chunk sizes to try for the batch of 48")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from clinloop.models.litemedsam import build_litemedsam, weights_available

    pretrained = weights_available()
    torch.manual_seed(0)
    model = build_litemedsam(True if pretrained else None)
    img = torch.rand(1, 3, 256, 256)
    print(f"threads={args.threads} repeats={args.repeats} weights={'pretrained' if pretrained else 'random'} "
          f"loadavg={os.getloadavg()[0]:.1f} torch={torch.__version__}")
    with torch.inference_mode():
        t_enc = _median_time(lambda: model.image_encoder(img), args.repeats)
        print(f"encoder, one 256x256 image:            {t_enc:.3f} s")
        emb = model.image_encoder(img)
        box = torch.tensor([[100.0, 100, 160, 150]])
        t_one = _median_time(lambda: model.decode(emb, boxes=box), args.repeats)
        print(f"decoder, one pass (box):               {t_one:.4f} s")
        boxes = torch.rand(48, 4) * 120
        boxes[:, 2:] += boxes[:, :2] + 10
        t_seq = _median_time(lambda: [model.decode(emb, boxes=boxes[i:i + 1]) for i in range(48)], max(1, args.repeats // 2))
        print(f"decoder, 48 sequential passes:         {t_seq:.3f} s")
        for c in (int(s) for s in args.chunks.split(",")):
            model.mask_decoder.chunk_size = c
            t_b = _median_time(lambda: model.decode(emb, boxes=boxes), max(1, args.repeats // 2))
            print(f"decoder, batch of 48 sharing one embedding, chunk {c:>2}: {t_b:.3f} s")


if __name__ == "__main__":
    main()
