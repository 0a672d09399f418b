"""LiteMedSAM image encoder: set-image time per 256² slice for each encoder
option on 1 and 2 threads, with the relative error of the embedding and the
box-prompt mask Dice against torch eager, in one run (options interleaved so
that machine load hits them alike; ``uptime`` load is recorded per round).

    PYTHONPATH=src python benchmarks/bench_encoder.py --repeats 5 --out bench_encoder.json
    PYTHONPATH=src python benchmarks/bench_encoder.py --options onnx-all,onnx-int8,torch-compile

Options: ``torch`` (eager, today's encoder), ``torch-cl`` (channels_last),
``torch-jit`` (trace + freeze + optimize_for_inference), ``torch-bf16``
(autocast bfloat16, inexact), ``torch-compile`` (not by default), ``onnx-<level>``
(ONNX Runtime fp32 at graph optimisation level basic/extended/all),
``onnx-all-parallel`` (ORT_PARALLEL execution), ``onnx-int8`` (not by default:
static QDQ int8, per-channel weights, uint8 activations (MinMax), convs and
weight matmuls only, calibrated on real LIDC and QUBIQ slices; on this
encoder every int8 variant tried gave a relative error of 0.85-0.92).
A set-image is preprocess + encoder + float16 rounding, as in
``LiteMedSAMPredictor.set_image`` with ``cache=False``.
Accuracy: over ``--slices`` LIDC dev slices (not the calibration ones), the
relative L2 error of the embedding and the Dice between the tight-box masks
decoded from each option's embedding and from eager's.
Needs the pretrained weights, onnxruntime (+ onnx for int8) and ../shared/data.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from clinloop.atomic import atomic_write_text
from clinloop.models.litemedsam import build_litemedsam
from clinloop.models.litemedsam import encoder_runtime as er
from clinloop.models.litemedsam.preprocess import preprocess
from clinloop.paths import shared_data_dir


def load() -> float:
    return os.getloadavg()[0]


def lidc_slices(data: Path, n: int, seed: int, skip: set[int] = frozenset()):
    d = np.load(data / "lidc" / "lidc_crops_dev.npz")
    maj = d["masks"].sum(1) >= 2
    ok = [i for i in np.flatnonzero(maj.reshape(len(maj), -1).sum(1) >= 10) if i not in skip]
    idx = np.random.default_rng(seed).choice(ok, n, replace=False)
    return [(int(i), d["image"][i], maj[i]) for i in idx]


def qubiq_slices(data: Path, n: int):
    import nibabel as nib

    cases = sorted((data / "qubiq_brain_growth" / "Training").glob("case*/image.nii.gz"))[:n]
    return [np.asarray(nib.load(p).dataobj, dtype=np.float32).squeeze() for p in cases]


def make_int8(fp32: Path, out: Path, calib: list[np.ndarray]) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"image": x} for x in calib])

        def get_next(self):
            return next(self.it, None)

    import onnx

    pre = out.with_name("pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=False)
    g = onnx.load(str(pre)).graph
    weights = {i.name for i in g.initializer}
    # activation x activation products (q @ k, attn @ v) stay float
    act_mm = [n.name for n in g.node if n.op_type == "MatMul" and not any(i in weights for i in n.input)]
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                    op_types_to_quantize=["Conv", "MatMul"], nodes_to_exclude=act_mm)
    return out


def ort_session(path: Path, threads: int, level: str, parallel: bool = False):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                   "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                   "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = threads if parallel else 1
    so.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(sess.run(None, {"image": x.numpy()})[0])


ALL = ("torch", "torch-cl", "torch-jit", "torch-bf16", "torch-compile", "onnx-basic", "onnx-extended", "onnx-all",
       "onnx-all-parallel", "onnx-int8")
DEFAULT = tuple(o for o in ALL if o not in ("torch-compile", "onnx-int8"))


def build_options(enc, fp32: Path, wanted: list[str], calib) -> dict:
    """name -> threads -> callable(x (1,3,256,256)) -> (1,256,64,64); ``torch`` always first."""
    ex = torch.rand(1, 3, 256, 256)
    opts: dict[str, dict[int, object]] = {"torch": {t: enc for t in (1, 2)}}
    for name in wanted:
        if name == "torch-cl":
            cl = lambda x: enc(x.contiguous(memory_format=torch.channels_last))  # noqa: E731
            opts[name] = {t: cl for t in (1, 2)}
        elif name == "torch-jit":
            with torch.no_grad():
                jit = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(enc, ex, check_trace=False)))
                jit(ex), jit(ex)  # warm-up (profiling executor)
            opts[name] = {t: jit for t in (1, 2)}
        elif name == "torch-bf16":
            def bf16(x):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return enc(x).float()
            opts[name] = {t: bf16 for t in (1, 2)}
        elif name == "torch-compile":
            try:
                comp = torch.compile(enc)
                with torch.no_grad():
                    comp(ex)
                opts[name] = {t: comp for t in (1, 2)}
            except Exception as e:  # no compiler / inductor unavailable offline
                print(f"torch.compile unavailable: {type(e).__name__}: {str(e)[:200]}")
        elif name in ("onnx-basic", "onnx-extended", "onnx-all"):
            opts[name] = {t: ort_session(fp32, t, name[5:]) for t in (1, 2)}
        elif name == "onnx-all-parallel":
            opts[name] = {t: ort_session(fp32, t, "all", parallel=True) for t in (1, 2)}
        elif name == "onnx-int8":
            t0 = time.perf_counter()
            q = make_int8(fp32, fp32.with_name("int8.onnx"), calib)
            print(f"static int8 quantisation: {time.perf_counter() - t0:.0f} s")
            opts[name] = {t: ort_session(q, t, "all") for t in (1, 2)}
    return opts


def set_image(fn, image, threads: int) -> tuple[torch.Tensor, float]:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    x = preprocess(image, 256)[0][None].float()
    with torch.no_grad():
        e = fn(x).to(torch.float16).float()
    return e, time.perf_counter() - t0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--slices", type=int, default=12, help="LIDC dev slices for the accuracy columns")
    ap.add_argument("--calib", type=int, default=16, help="LIDC calibration slices for int8 (+ 4 QUBIQ)")
    ap.add_argument("--options", default=",".join(DEFAULT),
                    help=f"comma-separated, from {', '.join(ALL)} (torch eager always runs: the reference)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench_encoder.json")
    args = ap.parse_args(argv)
    wanted = [o.strip() for o in args.options.split(",") if o.strip()]
    bad = [o for o in wanted if o not in ALL]
    if bad:
        raise SystemExit(f"unknown --options {bad}; choose from {', '.join(ALL)}")
    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs ../shared/data (set CLINLOOP_SHARED_DATA)")
    model = build_litemedsam(True)
    enc = model.image_encoder.eval()
    test = lidc_slices(data, args.slices, args.seed)
    calib = None
    if "onnx-int8" in wanted:
        calib_imgs = [s[1] for s in lidc_slices(data, args.calib, args.seed + 1, {i for i, _, _ in test})] + qubiq_slices(data, 4)
        calib = [preprocess(im, 256)[0][None].float().numpy() for im in calib_imgs]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        fp32 = er.export_onnx(enc, Path(tmp) / "fp32.onnx")
        print(f"ONNX export: {time.perf_counter() - t0:.1f} s (load {load():.2f})")
        opts = build_options(enc, fp32, wanted, calib)
        # accuracy (2 threads): embeddings and tight-box masks vs eager
        acc = {name: {"rel_err": [], "dice": []} for name in opts}
        for _, image, target in test:
            ys, xs = np.nonzero(target)
            from clinloop.models.litemedsam.predictor import LiteMedSAMPredictor

            p = LiteMedSAMPredictor(model, cache=False)
            ref_mask = None
            for name in opts:
                e, _ = set_image(opts[name][2], image, 2)
                if name == "torch":
                    ref_e = e
                p.set_embedding(e, image.shape)
                m = p.predict(box=[xs.min(), ys.min(), xs.max(), ys.max()])[0][0]
                if name == "torch":
                    ref_mask = m
                acc[name]["rel_err"].append(float((e - ref_e).norm() / ref_e.norm()))
                den = m.sum() + ref_mask.sum()
                acc[name]["dice"].append(1.0 if den == 0 else float(2 * (m & ref_mask).sum() / den))
        # timing, interleaved: each round runs every option x threads once on the next slice
        times = {(n, t): [] for n in opts for t in (1, 2)}
        loads = []
        for r in range(args.repeats + 1):  # round 0 is warm-up
            image = test[r % len(test)][1]
            la = load()
            for (n, t) in times:
                _, dt = set_image(opts[n][t], image, t)
                if r:
                    times[(n, t)].append(dt)
            if r:
                loads.append((la, load()))
            print(f"round {r}: load {la:.2f} -> {load():.2f}", flush=True)
    rows = []
    for n in opts:
        row = {"option": n, "rel_err_mean": statistics.fmean(acc[n]["rel_err"]), "rel_err_max": max(acc[n]["rel_err"]),
               "dice_vs_eager_mean": statistics.fmean(acc[n]["dice"]), "dice_vs_eager_min": min(acc[n]["dice"])}
        for t in (1, 2):
            row[f"s_{t}thr_median"] = statistics.median(times[(n, t)])
            row[f"s_{t}thr_min"] = min(times[(n, t)])
        rows.append(row)
    print(f"\n{'option':<18} {'1 thr s':>8} {'2 thr s':>8} {'(min)':>7} {'rel err':>9} {'Dice vs eager':>14}")
    for row in rows:
        print(f"{row['option']:<18} {row['s_1thr_median']:8.3f} {row['s_2thr_median']:8.3f} {row['s_2thr_min']:7.3f} "
              f"{row['rel_err_mean']:9.2e} {row['dice_vs_eager_mean']:8.4f} (min {row['dice_vs_eager_min']:.3f})")
    out = {"rows": rows, "load_per_round": loads, "uptime_end": os.popen("uptime").read().strip(),
           "repeats": args.repeats, "slices": args.slices, "torch": torch.__version__,
           "note": "set-image = preprocess + encoder + float16 rounding; medians over interleaved rounds"}
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    print(out["uptime_end"])
    atomic_write_text(args.out, json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
