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
slices. Timings: median (min) of 3 rounds over 5 slices, graph optimisation ``all``,
sequential execution. Quantised files go to ``--out`` (gitignored ``runs/``).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def slices(root: Path) -> list[np.ndarray]:
    """Preprocessed (1, 3, 256, 256) model inputs of real slices (module docstring)."""
    from clinloop.data import load_dataset
    from clinloop.models.litemedsam.preprocess import preprocess

    out = []
    lidc = load_dataset(root / "lidc" / "lidc_crops_dev.npz")
    planes = [lidc[i].image for i in range(0, 400, 20)]
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


if __name__ == "__main__":
    main()
