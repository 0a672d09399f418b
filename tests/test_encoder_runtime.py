"""The LiteMedSAM image encoder's runtimes (torch eager vs ONNX Runtime): same
embeddings, same masks, and the exported ONNX file's cache (reuse, rebuild)."""
from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch

from clinloop.models.litemedsam import build_litemedsam, weights_available
from clinloop.models.litemedsam import encoder_runtime as er
from clinloop.models.litemedsam.encoder_runtime import EncoderRuntime, encode, resolve
from clinloop.models.litemedsam.image_encoder import TinyViTConfig, TinyViTEncoder
from clinloop.models.litemedsam.preprocess import preprocess

pytest.importorskip("onnxruntime")
TORCH, ONNX = EncoderRuntime("torch"), EncoderRuntime("onnx")
# measured: relative L2 error 2.3e-6..2.8e-6, max |diff| ~2e-5 on embeddings of magnitude ~1
REL_TOL, ABS_TOL = 2e-5, 2e-4


@pytest.fixture(scope="module")
def model():
    if not weights_available():
        pytest.skip("LiteMedSAM weights not installed")
    return build_litemedsam(True)


@pytest.fixture(scope="module")
def onnx_root(model, tmp_path_factory):
    """One export of the pretrained encoder for this module (the slow part, ~10 s idle)."""
    root = tmp_path_factory.mktemp("onnx")
    er.ensure_model(model.image_encoder, root)
    return root


@pytest.fixture(scope="module")
def lidc_row(shared_data):
    d = np.load(shared_data / "lidc" / "lidc_crops_dev.npz")
    row = 107
    return d["image"][row], d["masks"][row].sum(0) >= 2


def _onnx(model, x, root):
    sess = er.session(model.image_encoder, 2, root)
    return torch.from_numpy(sess.run(None, {"image": x.numpy()})[0])


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_onnx_embedding_equals_eager_random_and_real(model, onnx_root, lidc_row):
    g = torch.Generator().manual_seed(0)
    real = preprocess(lidc_row[0], 256)[0][None].float()
    for x in (torch.rand(1, 3, 256, 256, generator=g), real):
        with torch.no_grad():
            ref = model.image_encoder(x)
        got = _onnx(model, x, onnx_root)
        assert got.shape == (1, 256, 64, 64)
        assert _rel(got, ref) < REL_TOL and float((got - ref).abs().max()) < ABS_TOL


def test_predictor_same_mask_with_each_runtime(model, onnx_root, lidc_row, monkeypatch):
    from clinloop.models.litemedsam.predictor import LiteMedSAMPredictor

    image, target = lidc_row
    ys, xs = np.nonzero(target)
    box = [xs.min(), ys.min(), xs.max(), ys.max()]
    monkeypatch.setattr(er, "model_path", lambda enc, root=None: er.Path(onnx_root) / f"tinyvit-{er.export_key(enc)}.onnx")
    masks = {}
    try:
        for rt in ("torch", "onnx"):
            er.set_runtime(model, rt)
            p = LiteMedSAMPredictor(model, cache=False)
            p.set_image(image)
            masks[rt] = p.predict(box=box)[0][0]
    finally:
        er.set_runtime(model, None)
    a, b = masks["torch"], masks["onnx"]
    assert a.sum() > 20  # a real nodule mask, not an empty agreement
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.99
    # and it is a good mask: tight box on slice 107 gives Dice > 0.7 with the majority mask
    assert 2 * (b & target).sum() / (b.sum() + target.sum()) > 0.7


@pytest.fixture
def tiny():
    """A small random TinyViT with named weights (exports in ~1 s)."""
    torch.manual_seed(0)
    enc = TinyViTEncoder(TinyViTConfig(img_size=64, depths=[1, 1, 1, 1])).eval()
    enc.weights_id = "tiny-test"
    return enc


def test_export_cache_reused_and_rebuilt_when_corrupt(tiny, tmp_path, monkeypatch, caplog):
    calls = []
    real_export = er.export_onnx
    monkeypatch.setattr(er, "export_onnx", lambda enc, path: calls.append(path) or real_export(enc, path))
    path = er.ensure_model(tiny, tmp_path)
    assert calls == [path] and path.parent == tmp_path and path.name.startswith("tinyvit-")
    assert er.ensure_model(tiny, tmp_path) == path and len(calls) == 1  # reused
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, path.name + ".sha256.json", path.name + ".lock"])
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ref = tiny(x)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with caplog.at_level(logging.WARNING, logger=er.__name__):
        assert er.ensure_model(tiny, tmp_path) == path
    assert len(calls) == 2 and "corrupt" in caplog.text
    flipped = bytearray(path.read_bytes())
    flipped[-100] ^= 0xFF  # same size, one weight byte changed
    path.write_bytes(bytes(flipped))
    er.ensure_model(tiny, tmp_path)
    assert len(calls) == 3
    er.clear_sessions()
    got = torch.from_numpy(er.session(tiny, 1, tmp_path).run(None, {"image": x.numpy()})[0])
    assert _rel(got, ref) < REL_TOL  # batch of 2 through the dynamic batch axis


def test_key_follows_weights_and_config(tiny):
    k = er.export_key(tiny)
    other = TinyViTEncoder(TinyViTConfig(img_size=64, depths=[1, 1, 1, 1], apply_attention_biases=True))
    other.weights_id = "tiny-test"
    assert er.export_key(other) != k
    tiny.weights_id = "tiny-test-2"
    assert er.export_key(tiny) != k


def test_resolve_auto_onnx_torch_and_errors(tiny, monkeypatch):
    monkeypatch.delenv(er.ENV_KIND, raising=False)
    er.set_default_runtime(None)
    with torch.no_grad():
        assert resolve(tiny) == "onnx"  # named weights, no autograd
        assert resolve(tiny, TORCH) == "torch"
        tiny.weights_id = None
        assert resolve(tiny) == "torch"  # unnamed (random/fine-tuned) weights: no export
        assert resolve(tiny, ONNX) == "onnx"
        assert resolve(torch.nn.Conv2d(3, 3, 1), ONNX) == "torch"  # not a TinyViT
        tiny.weights_id = "tiny-test"
        tiny.train()
        assert resolve(tiny) == "torch"  # training mode: eager (the export is of eval mode)
        tiny.eval()
        tiny.weights_id = None
    assert resolve(tiny) == "torch"  # autograd on: eager
    with pytest.raises(ValueError, match="no gradients"):
        resolve(tiny, ONNX)
    monkeypatch.setenv(er.ENV_KIND, "torch")
    tiny.weights_id = "tiny-test"
    with torch.no_grad():
        assert resolve(tiny) == "torch"
        er.set_runtime(tiny, "auto")
        assert resolve(tiny) == "onnx"  # a pinned runtime beats the environment
    with pytest.raises(ValueError, match="kind must be one of"):
        EncoderRuntime("int4")
    with pytest.raises(ValueError, match="threads"):
        EncoderRuntime("onnx", threads=0)
    monkeypatch.setenv(er.ENV_KIND, "onx")
    with pytest.raises(ValueError, match="CLINLOOP_ENCODER"):
        er.runtime_from_env()
    monkeypatch.setenv(er.ENV_KIND, "onnx")
    monkeypatch.setenv(er.ENV_THREADS, "two")
    with pytest.raises(ValueError, match="CLINLOOP_ENCODER_THREADS"):
        er.runtime_from_env()
    monkeypatch.setenv(er.ENV_THREADS, "3")
    assert er.runtime_from_env() == EncoderRuntime("onnx", 3)


def test_auto_falls_back_to_torch_without_onnxruntime(tiny, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    monkeypatch.setattr(er, "_warned", set())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad(), caplog.at_level(logging.INFO, logger=er.__name__):
        assert resolve(tiny, EncoderRuntime("auto")) == "torch"
        got = encode(tiny, x, EncoderRuntime("auto"))
        assert torch.equal(got, tiny(x))
    assert caplog.text.count("onnxruntime is not installed") == 1  # logged once
    with torch.no_grad(), pytest.raises(ImportError):
        resolve(tiny, ONNX)


def test_auto_falls_back_once_when_the_export_fails(tiny, tmp_path, monkeypatch, caplog):
    calls = []

    def broken(enc, path):
        calls.append(path)
        raise RuntimeError("Module onnx is not installed!")
    monkeypatch.setattr(er, "export_onnx", broken)
    monkeypatch.setattr(er, "_failed", set())
    monkeypatch.setenv("CLINLOOP_CACHE", str(tmp_path))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad(), caplog.at_level(logging.WARNING, logger=er.__name__):
        for _ in range(2):
            assert torch.equal(encode(tiny, x, EncoderRuntime("auto")), tiny(x))
        with pytest.raises(RuntimeError, match="onnx is not installed"):
            encode(tiny, x, ONNX)  # explicit onnx: the error, not a silent fallback
    assert len(calls) == 2 and caplog.text.count("running torch eager") == 1
