"""Speed: per-iteration latency and set-image time of every interactive method, on the
same machine in the same run (spa.txt §4.2 reports 0.2 s per iteration on an RTX
A4000), plus the SAM parts' timing with random weights.

* ``speed-interactive``: per method (``spa``, ``meduhip``, ``click-litemedsam``,
  ``box-litemedsam``) the spa protocol's own case loop
  (``clinloop.evaluation.spa_protocol.run_case``, 3 iterations) on held-out LIDC
  slices, each method with an empty embedding cache of its own, so set-image is the
  cold image-encoder pass. Median and 90th percentile over all steps / images.
* ``speed-sam-parts``: LiteMedSAM built with random weights: the TinyViT image
  encoder (256² input) and one prompt encoder + mask decoder pass for a point.
  The decoder is SAM's (two-way transformer depth 2, 256 channels, 64² embedding:
  the same module SAM ViT-B uses), so its time is SAM ViT-B's decoder time on this
  machine; and SAM's ViT-B image encoder on a 1024² input
  (:class:`clinloop.models.litemedsam.sam_vit.SAMViTEncoder`, SAM ViT-B's architecture
  and 89.7 M parameters, random weights), the encoder LiteMedSAM's TinyViT replaces.

Sizes: ``--quick`` 2 images per method, 2 repeats of the parts; default 10 images,
10 repeats (est. ~5 min; the ViT-B encoder ~8 s a pass on 2 threads); ``--full`` 30 images,
30 repeats. MECCA's per-step time is in
its protocol's ``seconds_per_step`` (not repeated here). Timings vary with the load:
the stage JSON records the load average.
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np

from clinloop.evaluation.benchmark.base import Context, Stage
from clinloop.evaluation.benchmark.published import SPA_SECONDS_PER_ITERATION
from clinloop.evaluation.benchmark.stats import fmt

TITLE = "Speed: latency per interaction and per image"
ALONE = True  # timings: the runner computes these stages one at a time, after every other stage (--jobs)
METHODS = ("spa", "meduhip", "click-litemedsam", "box-litemedsam")
ITERATIONS = 3


def _q(xs: list[float], q: float) -> float | None:
    return float(np.quantile(xs, q)) if xs else None


class _FreshCache:
    """``CLINLOOP_CACHE`` pointed at an empty temporary folder inside the block."""

    def __enter__(self):
        import tempfile

        self._tmp = tempfile.TemporaryDirectory(prefix="clinloop-bench-cache-")
        self._old = os.environ.get("CLINLOOP_CACHE")
        os.environ["CLINLOOP_CACHE"] = self._tmp.name
        return self

    def __exit__(self, *exc):
        if self._old is None:
            os.environ.pop("CLINLOOP_CACHE", None)
        else:
            os.environ["CLINLOOP_CACHE"] = self._old
        self._tmp.cleanup()
        return False


def _interactive(ctx: Context) -> dict:
    from clinloop.data import load_dataset
    from clinloop.evaluation.benchmark.cases import heldout_lidc, lidc_dir
    from clinloop.evaluation.spa_protocol import load_method, run_case

    ds = load_dataset(lidc_dir(ctx.data_root))
    idx = heldout_lidc(ds, per_nodule=1, limit=ctx.size(2, 10, 30))
    out = {}
    for method in METHODS:
        with _FreshCache():
            model = load_method(method, None)
            steps, sets = [], []
            for pos, i in enumerate(idx):
                s = ds[i]
                _, secs, t_set, _, _ = run_case(model, method, s.image[0], s.masks, s.rater_valid, ctx.seed + pos,
                                                ITERATIONS)
                steps += secs
                sets.append(t_set)
        out[method] = {"iteration_median": _q(steps, 0.5), "iteration_p90": _q(steps, 0.9),
                       "set_image_median": _q(sets, 0.5), "set_image_p90": _q(sets, 0.9),
                       "n_images": len(sets), "n_steps": len(steps), "steps": steps, "set_image": sets}
    return {"n_cases": len(idx), "methods": out, "load_average": _load(), "threads": _threads()}


def _load() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _time(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


def _sam_parts(ctx: Context) -> dict:
    import torch

    from clinloop.models.litemedsam import build_litemedsam
    from clinloop.models.litemedsam.sam_vit import SAMViTEncoder

    torch.manual_seed(ctx.seed)
    m = build_litemedsam(None)  # random weights: timing only
    vit_b = SAMViTEncoder().eval()
    reps = ctx.size(2, 10, 30)
    g = torch.Generator().manual_seed(ctx.seed)
    x, x1024 = torch.rand(1, 3, 256, 256, generator=g), torch.rand(1, 3, 1024, 1024, generator=g)
    with torch.inference_mode():
        emb = m.image_encoder(x)
        pts = (torch.tensor([[[128.0, 128.0]]]), torch.tensor([[1]]))
        enc = _time(lambda: m.image_encoder(x), reps)
        dec = _time(lambda: m.decode(emb, points=pts), reps)
        vit = _time(lambda: vit_b(x1024), reps)
    return {"repeats": reps, "tinyvit_encoder_256": enc, "sam_decoder_point": dec, "vit_b_encoder_1024": vit,
            "tinyvit_encoder_median": statistics.median(enc), "sam_decoder_median": statistics.median(dec),
            "vit_b_encoder_median": statistics.median(vit),
            "vit_b_parameters": sum(p.numel() for p in vit_b.parameters()),
            "load_average": _load(), "threads": _threads()}


def stages(ctx: Context) -> list[Stage]:
    return [Stage("speed-interactive", _interactive, {"images": ctx.size(2, 10, 30), "iterations": ITERATIONS}),
            Stage("speed-sam-parts", _sam_parts, {"repeats": ctx.size(2, 10, 30), "vit_b": True})]


def section(ctx: Context, recs: dict[str, dict]) -> str:
    from clinloop.evaluation.benchmark.report import sizes_line, table

    text = [f"## {TITLE}\n"]
    it = recs.get("speed-interactive", {}).get("result")
    if it:
        rows = [[m, fmt(r["iteration_median"]), fmt(r["iteration_p90"]), fmt(r["set_image_median"]),
                 fmt(r["set_image_p90"]), r["n_images"]] for m, r in it["methods"].items()]
        rows.append(["SPA (**published**, spa.txt §4.2, RTX A4000)", SPA_SECONDS_PER_ITERATION, "—", "—", "—", "—"])
        text += [table(["method", "s / iteration (median)", "p90", "set-image s (median, cold cache)", "p90", "images"],
                       rows),
                 f"\nSame process, one after the other, {it['threads']} torch thread(s), load average "
                 f"{it['load_average']} at the end. What differs: the paper times a GPU; ours is a shared CPU. "
                 "Set-image is the LiteMedSAM (TinyViT) image encoder for all four methods.\n"]
    sp = recs.get("speed-sam-parts", {}).get("result")
    if sp:
        text += [table(["part (random weights)", "s (median)", "repeats"],
                       [["TinyViT image encoder, 256² (LiteMedSAM)", fmt(sp["tinyvit_encoder_median"]), sp["repeats"]],
                        ["SAM mask decoder + prompt encoder, one point (the module SAM ViT-B uses)",
                         fmt(sp["sam_decoder_median"]), sp["repeats"]],
                        [f"SAM ViT-B image encoder, 1024² (its architecture, "
                         f"{sp['vit_b_parameters'] / 1e6:.1f} M parameters)", fmt(sp["vit_b_encoder_median"]),
                         sp["repeats"]]])]
    text.append(sizes_line(recs))
    return "\n".join(text)
