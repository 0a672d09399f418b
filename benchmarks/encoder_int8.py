"""Static int8 quantisation of the LiteMedSAM image encoder (TinyViT) with ONNX Runtime:
seconds per 256² slice and the embedding's relative error against the float32 export
(issue 13 "Speed": static quantisation with calibration, measured side by side).

    python benchmarks/encoder_int8.py --data-root ../shared/data [--threads 2]

Calibration and test slices are disjoint: LIDC crops (every 20th of the first 400) and
BraTS case_0 axial slices 50-108 (every 6th), alternately. Variants (QDQ, per-channel
int8 weights, uint8 activations; ``onnxruntime.quantization.quantize_static``):

* ``mm+conv``: every MatMul and Conv;
* ``mm``: every MatMul;
* ``weight-mm``: only the MatMuls with a weight input (not attention's q·k and a·v);
* ``weight-mm, percentile``: the same with 99.99-percentile activation ranges.

Relative error: ||e_q - e|| / ||e|| of the (256, 64, 64) embedding, mean over the test
slices.

``--lidc-dice`` also runs the LIDC spa protocol (``spa-lidc``, the 25 held-back middle
slices of ``benchmarks/spa_general_report.py``, 6 iterations) twice, with the float32
and the ``weight-mm`` encoder, each into a fresh embedding cache, and prints Dice after
iterations 1, 3 and 6 and the paired per-case differences (issue 13: "the same masks,
Dice change <= 0.005"). It says how many calibration slices come from held-back patients. Timings: median (min) of 3 rounds over 5 slices, graph optimisation ``all``,
sequential execution. Quantised files go to ``--out`` (gitignored ``runs/``).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


LIDC_SLICES = range(0, 400, 20)  # indices into lidc_crops_dev.npz


def slices(root: Path) -> list[np.ndarray]:
    """Preprocessed (1, 3, 256, 256) model inputs of real slices (module docstring)."""
    from clinloop.data import load_dataset
    from clinloop.models.litemedsam.preprocess import preprocess

    out = []
    lidc = load_dataset(root / "lidc" / "lidc_crops_dev.npz")
    planes = [lidc[i].image for i in LIDC_SLICES]
    brats = load_dataset(root / "brats2018_flair")[0]
    planes += [brats.image[:, z] for z in range(50, 110, 6)]
    for p in planes:
        x, _ = preprocess(p)
        out.append(np.asarray(x, np.float32).reshape(1, 3, 256, 256))
    return out


def session(path, threads: int):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads = threads, 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/encoder_int8")
    ap.add_argument("--lidc-dice", action="store_true", help="also the LIDC spa protocol with each encoder")
    ap.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                    help="quantise only these variants (default: all; the percentile calibration needs ~20 GB)")
    a = ap.parse_args(argv)

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from clinloop.models.litemedsam import build_litemedsam
    from clinloop.models.litemedsam.encoder_runtime import export_onnx, model_path

    enc = build_litemedsam(True).image_encoder.eval()
    src = model_path(enc)
    if not src.is_file():
        export_onnx(enc, src)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    xs = slices(Path(a.data_root))
    cal, test = xs[::2], xs[1::2]
    name = session(src, 1).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: x} for x in cal])

        def get_next(self):
            return next(self.it, None)

    pre = out / "pre.onnx"
    quant_pre_process(str(src), str(pre))
    g = onnx.load(str(pre)).graph
    consts = {i.name for i in g.initializer} | {n.output[0] for n in g.node if n.op_type == "Constant"}
    act_mm = [n.name for n in g.node if n.op_type == "MatMul" and not any(i in consts for i in n.input)]
    variants = {"mm+conv": dict(op_types_to_quantize=["MatMul", "Conv", "Gemm"]),
                "mm": dict(op_types_to_quantize=["MatMul", "Gemm"]),
                "weight-mm": dict(op_types_to_quantize=["MatMul"], nodes_to_exclude=act_mm),
                "weight-mm, percentile": dict(op_types_to_quantize=["MatMul"], nodes_to_exclude=act_mm,
                                              calibrate_method=CalibrationMethod.Percentile,
                                              extra_options={"CalibPercentile": 99.99})}
    if a.lidc_dice and a.variants is not None and "weight-mm" not in a.variants:
        ap.error("--lidc-dice compares the weight-mm variant: include it in --variants")
    unknown = set(a.variants or ()) - set(variants)
    if unknown:
        ap.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(variants)}")
    variants = {k: v for k, v in variants.items() if a.variants is None or k in a.variants}
    paths = {"float32 (today's ONNX Runtime encoder)": src}
    for tag, kw in variants.items():
        p = out / (tag.replace(", ", "-").replace("+", "-") + ".onnx")
        quantize_static(str(pre), str(p), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, **kw)
        paths[tag] = p
    ref = session(src, a.threads)
    y_ref = [ref.run(None, {name: x})[0] for x in test]
    print(f"{len(cal)} calibration / {len(test)} test slices, {a.threads} threads")
    for tag, p in paths.items():
        s = session(p, a.threads)
        s.run(None, {name: test[0]})
        ts = []
        for _ in range(3):
            for x in test[:5]:
                t0 = time.perf_counter()
                s.run(None, {name: x})
                ts.append(time.perf_counter() - t0)
        err = np.mean([np.linalg.norm(s.run(None, {name: x})[0] - y) / np.linalg.norm(y) for x, y in zip(test, y_ref)])
        print(f"{tag:40s} {np.median(ts):.3f} s ({min(ts):.3f})  relative error {err:.3g}", flush=True)
    if a.lidc_dice:
        lidc_dice(Path(a.data_root), {"float32": src, "int8 weight-mm": paths["weight-mm"]}, a.threads, out)


def lidc_dice(root: Path, paths: dict, threads: int, out: Path) -> None:
    """The LIDC spa protocol with each encoder file (module docstring)."""
    import os
    import tempfile

    import clinloop
    from clinloop.data import load_dataset
    from clinloop.evaluation.benchmark.cases import read_cases
    from clinloop.models.litemedsam import encoder_runtime
    from clinloop.training.spa_data import patient_split

    dev = load_dataset(root / "lidc" / "lidc_crops_dev.npz")
    held = {p for p, part in patient_split(dev.patient_ids, 0.2, 0).items() if part == "val"}
    overlap = sum(dev.patient_ids[i] in held for i in LIDC_SLICES)
    print(f"calibration slices from held-back LIDC patients: {overlap} of {len(LIDC_SLICES)}")
    real, runs = encoder_runtime.session, {}
    for tag, path in paths.items():
        sess = session(path, threads)
        encoder_runtime.session = lambda encoder, n, root=None, _s=sess: _s
        encoder_runtime.set_default_runtime("onnx")
        try:
            with tempfile.TemporaryDirectory() as cache:
                os.environ["CLINLOOP_CACHE"] = cache
                stem = out / f"lidc_{tag.replace(' ', '_')}"
                clinloop.evaluate("spa", "spa", str(root / "lidc"), model="spa-lidc", split="val", limit=25,
                                  iterations=6, per_nodule=1, threads=threads, out=f"{stem}.json")
                runs[tag] = [[c[f"dice_{k}"] for k in (1, 3, 6)] for c in read_cases(f"{stem}_cases.csv")]
        finally:
            encoder_runtime.session = real
            encoder_runtime.set_default_runtime(None)
            os.environ.pop("CLINLOOP_CACHE", None)
    for tag, rows in runs.items():
        print(f"{tag:16s} Dice@1/@3/@6 " + " / ".join(f"{v:.4f}" for v in np.mean(rows, 0)), flush=True)
    a, b = (np.asarray(v) for v in runs.values())
    print(f"int8 - float32, mean over {len(a)} cases: " + " / ".join(f"{v:+.4f}" for v in (b - a).mean(0))
          + "; largest per-case |change| " + " / ".join(f"{v:.4f}" for v in np.abs(b - a).max(0)))


if __name__ == "__main__":
    main()
