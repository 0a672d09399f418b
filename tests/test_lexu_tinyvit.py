"""LEXU with the frozen pretrained LiteMedSAM TinyViT encoder (``--encoder tinyvit``):
feature pyramid, on-disk cache keyed by image content, training / loading /
evaluating a model folder. Each TinyViT pass costs ~2 s on one thread, so the
tests use few images."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clinloop.models.litemedsam.weights import weights_available

pytestmark = pytest.mark.skipif(not weights_available(), reason="LiteMedSAM weights not installed")

from _lexu_fixtures import write_tiny_riga  # noqa: E402


def test_pyramid_matches_litemedsam_and_cache_is_keyed_by_content(tmp_path, monkeypatch):
    from clinloop.models.lexu.network import TinyViTFeatures, tinyvit_features

    monkeypatch.setenv("CLINLOOP_CACHE", str(tmp_path / "cache"))
    f = tinyvit_features()
    f.memory.clear()
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    feats = f(x)
    assert [tuple(t.shape) for t in feats] == [(1, 128, 128, 128), (1, 160, 64, 64), (1, 320, 64, 64), (1, 256, 64, 64)]
    # the coarsest map is LiteMedSAM's image embedding (rounded through float16)
    with torch.no_grad():
        emb = f.encoder(x)
    np.testing.assert_allclose(feats[3].numpy(), emb.numpy(), atol=2e-2, rtol=1e-2)
    assert torch.equal(feats[3], feats[3].half().float())  # always float16-rounded
    files = list((tmp_path / "cache" / "lexu-tinyvit" / f.weights_id).glob("*.npz"))
    assert len(files) == 1
    # a fresh instance (empty memory) reads the same values back from disk, no recomputation
    g = TinyViTFeatures.__new__(TinyViTFeatures)
    g.__dict__.update(f.__dict__)
    g.memory, g.encoder = {}, None  # a miss would crash on the missing encoder
    again = g(x.clone())
    for a, b in zip(feats, again):
        assert torch.equal(a, b)


def test_tinyvit_networks_shapes_and_small_state_dict():
    from clinloop.models.lexu.config import LexuConfig, build_network

    # the image of the first test: its features are still in the in-memory cache
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    for method, n_out in (("lexu", 4), ("layer-ensemble", 4), ("unet", 1), ("ensemble", 3)):
        cfg = LexuConfig(method=method, encoder="tinyvit", size=256, widths=[4, 4, 6, 6, 8], normalisation="minmax",
                         n_members=3)
        net = build_network(cfg)
        assert tuple(net.train_logits(x).shape) == (1, n_out, 256, 256)
        # flips act on the cached features (output in the flipped frame)
        assert tuple(net.train_logits(x, (-1,)).shape) == (1, n_out, 256, 256)
        # the frozen encoder is not part of the model's parameters or state dict
        assert not any("patch_embed" in k or "layers." in k for k in net.state_dict())
        assert sum(p.numel() for p in net.parameters()) < 50_000
    with pytest.raises(ValueError, match="256"):
        LexuConfig(encoder="tinyvit", size=96, widths=[4, 4, 6, 6, 8], normalisation="minmax")
    with pytest.raises(ValueError, match="minmax"):
        LexuConfig(encoder="tinyvit", size=256, widths=[4, 4, 6, 6, 8])
    with pytest.raises(ValueError, match="5 widths"):
        LexuConfig(encoder="tinyvit", size=256, widths=[4, 4, 6], normalisation="minmax")


def test_train_load_evaluate_tinyvit_folder(tmp_path):
    from clinloop.cli import main
    from clinloop.data import load_dataset
    from clinloop.models.lexu.model import load_lexu

    data = write_tiny_riga(tmp_path / "tiny.npz", n=2)
    out = tmp_path / "m"
    assert main(["train", "--method", "lexu", "--encoder", "tinyvit", "--data", str(data), "--out", str(out),
                 "--epochs", "2", "--widths", "4,4,6,6,8", "--structure", "cup", "--test-fraction", "0.5",
                 "--threads", "1"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["encoder"] == "tinyvit" and cfg["size"] == 256 and cfg["normalisation"] == "minmax"
    assert (out / "weights.pt").stat().st_size < 200_000  # decoder + heads only
    pred = load_lexu(out)
    ds = load_dataset(data, structure="cup")
    prob, unc, u = pred.predict(ds[0].image)
    assert prob.shape == unc.shape == (32, 32) and 0 <= prob.min() <= prob.max() <= 1
    assert u == pytest.approx(float(pred.run_batch(pred.prepare([ds[0].image]))["image_uncertainty"][0]), rel=1e-5)
    res = tmp_path / "r.json"
    assert main(["evaluate", "--method", "lexu", "--protocol", "lexu", "--data", str(data), "--model", str(out),
                 "--out", str(res), "--difficulty-cases", "0", "--no-figures"]) == 0
    r = json.loads(res.read_text())
    assert r["n_cases"] == 1 and r["forward_passes"] == 1 and r["parameters"] < 50_000
    assert r["seconds_per_image"] > 0.1  # the frozen encoder's time is counted (cache bypassed)


def test_ensemble_members_share_one_encoder_pass(monkeypatch):
    """With the cache bypassed (timing), a 3-member ensemble still runs the
    frozen encoder once per image, and a new batch runs it again."""
    from clinloop.models.lexu.config import LexuConfig, build_network
    from clinloop.models.lexu.network import tinyvit_features

    f = tinyvit_features()
    calls = []

    def fake(x):
        calls.append(x.shape[0])
        return [torch.zeros(x.shape[0], c, 256 // s, 256 // s) for c, s in zip(f.channels, f.strides)]

    monkeypatch.setattr(f, "compute", fake)
    monkeypatch.setattr(f, "enabled", False)
    net = build_network(LexuConfig(method="ensemble", encoder="tinyvit", size=256, widths=[4, 4, 6, 6, 8],
                                   normalisation="minmax", n_members=3)).eval()
    x = torch.rand(1, 3, 256, 256)
    assert net.sample_probs(x).shape == (1, 3, 256, 256)
    assert calls == [1]
    net.sample_probs(x.clone())
    assert calls == [1, 1]
