"""SPAModel through the Session facade, and the Algorithm-1 trainer (smoke).

A randomly initialised LiteMedSAM decoder with a one-conv stand-in for the
TinyViT encoder keeps these fast; the real backbone is exercised end to end in
tests/test_spa_protocol.py."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from clinloop.interaction.session import Session
from clinloop.models.spa.config import SPAConfig
from clinloop.models.spa.model import SPAModel, SPANet, load_spa, save_spa


class StubEncoder(nn.Module):
    """(B, 3, 256, 256) -> (B, 256, 64, 64)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 256, 4, stride=4)

    def forward(self, x):
        return self.conv(x)


def tiny_net(method="spa", **kw) -> SPANet:
    from clinloop.models.litemedsam import build_litemedsam

    torch.manual_seed(0)
    bb = build_litemedsam(None)
    bb.image_encoder = StubEncoder()
    net = SPANet(SPAConfig(method=method, n_samples=12, **kw), bb)
    # make the zero-initialised conditioning output matter so samples differ
    torch.nn.init.normal_(net.conditioning.conv3.weight, std=0.5)
    return net


@pytest.fixture(scope="module")
def model():
    return SPAModel(tiny_net())


def _image(h=40, w=52):
    yy, xx = np.mgrid[:h, :w]
    return (100 * ((yy - 20) ** 2 + (xx - 25) ** 2 < 120) + 5 * np.sin(xx / 3.0)).astype(np.float32)


def test_session_click_choose_accept(model):
    img = _image()
    s = Session(model, img, seed=3)
    p = s.click((25, 20))
    assert p.mask.shape == (40, 52) and p.mask.dtype == bool
    assert p.candidates.shape == (4, 40, 52) and p.candidates.dtype == bool
    assert p.probability.shape == (40, 52) and 0 <= p.probability.min() and p.probability.max() <= 1
    np.testing.assert_array_equal(p.mask, p.probability > 0.5)
    assert p.iteration == 1 and p.extra["n_samples"] == 12
    assert p.candidate_differences().shape == (4, 2, 40, 52)
    p2 = s.choose(2)
    assert p2.iteration == 2 and p2.candidates.shape == (4, 40, 52)
    prof = s.profile()
    assert prof["method"] == "spa" and len(prof["gmm"]["pi"]) == 16 and len(prof["gmm"]["mu"][0]) == 8
    m = s.accept()
    assert np.array_equal(m, p2.mask)
    # replay reproduces exactly
    r = Session.replay(model, img, s.history, seed=3)
    assert np.array_equal(r.accepted, m)
    assert np.array_equal(r.proposal.candidates, p2.candidates)
    # another seed samples other latents
    s2 = Session(model, img, seed=4)
    assert not np.array_equal(s2.click((25, 20)).probability, p.probability)


def test_profile_carries_to_next_image(model):
    s = Session(model, _image(), seed=0)
    s.click((25, 20))
    s.choose(0)
    prof = s.profile()
    t = Session(model, _image(48, 48), seed=0, profile=prof)
    t.click((20, 20))
    # the first iteration used the carried GMM, so the profile is unchanged until the next choice
    assert t.profile()["gmm"] == prof["gmm"]
    t.choose(1)
    assert t.profile()["gmm"] != prof["gmm"]


def test_rgb_and_bad_inputs(model):
    rgb = np.stack([_image()] * 3, axis=-1)
    assert Session(model, rgb).click((10, 10)).mask.shape == (40, 52)
    s = Session(model, _image())
    with pytest.raises(ValueError, match="before any click"):
        s.choose(0)
    with pytest.raises(ValueError, match="outside"):
        s.click((60, 10))
    s.click((10, 10))
    with pytest.raises(ValueError, match="out of range"):
        s.choose(4)
    with pytest.raises(ValueError, match="hint"):
        s.hint([((1, 1), True)])
    with pytest.raises(ValueError, match="constant"):  # volumes are accepted (test_session_volume), blank ones not
        Session(model, np.zeros((5, 20, 20), np.float32))
    with pytest.raises(ValueError, match="gmm"):
        Session(model, _image(), profile={"pi": [1.0]})
    with pytest.raises(ValueError, match="latent dimension"):
        Session(model, _image(), profile={"gmm": {"pi": [1.0], "mu": [[0.0]], "sigma": [[1.0]]}})


def test_tail_and_embedding_paths_agree_at_init():
    """With the zero-initialised conditioning output, both paths reduce to the plain decoder."""
    from clinloop.models.spa.preference_distribution import GMM

    torch.manual_seed(1)
    a = tiny_net()
    torch.nn.init.zeros_(a.conditioning.conv3.weight)
    b = tiny_net(path="embedding")
    torch.nn.init.zeros_(b.conditioning.conv3.weight)
    b.backbone.load_state_dict(a.backbone.state_dict())
    e = torch.randn(1, 256, 64, 64)
    pts = (torch.tensor([[[100.0, 120.0]]]), torch.tensor([[1]]))
    sp, de = a.encode_interaction(pts, None)
    g = GMM(torch.full((16,), 1 / 16), torch.randn(16, 8), torch.ones(16, 8))
    with torch.no_grad():
        la, _, _ = a.gen_mask(e, sp, de, g, 2, torch.Generator().manual_seed(0))
        lb, _, _ = b.gen_mask(e, sp, de, g, 2, torch.Generator().manual_seed(0))
        ref, _ = a.backbone.mask_decoder(e, a.backbone.prompt_encoder.get_dense_pe(), sp, de, False)
    torch.testing.assert_close(la, ref[:, 0].expand(2, -1, -1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(lb, la, atol=1e-4, rtol=1e-4)



def _stub_backbone_builder(monkeypatch):
    """``build_litemedsam`` -> a random backbone with the stub image encoder (loaders build through it)."""
    import clinloop.models.litemedsam as lm

    real = lm.build_litemedsam

    def fake(checkpoint=True, eval_mode=True):
        bb = real(None, eval_mode)
        bb.image_encoder = StubEncoder()
        return bb

    monkeypatch.setattr(lm, "build_litemedsam", fake)


def test_save_load_roundtrip(tmp_path, monkeypatch):
    net = tiny_net("spa-weights")
    save_spa(net, tmp_path / "m", extra={"note": "test"})
    assert (tmp_path / "m" / "config.json").is_file() and (tmp_path / "m" / "data.json").is_file()
    _stub_backbone_builder(monkeypatch)
    m = load_spa(tmp_path / "m")
    assert m.name == "spa-weights"
    sd = m.net.trainable_state_dict()
    for k, v in net.trainable_state_dict().items():
        torch.testing.assert_close(sd[k], v.half().float())
    from clinloop.errors import DataError

    (tmp_path / "m" / "weights.pt").write_bytes(b"garbage")
    with pytest.raises(DataError):
        load_spa(tmp_path / "m")


@pytest.mark.parametrize("method", ["spa", "meduhip", "click-litemedsam"])
def test_a_folder_without_weights_is_an_error_naming_the_file(tmp_path, monkeypatch, method):
    """config.json but no weights.pt (an interrupted training): an error naming the file, never an
    untrained net, as the LEXU and MECCA loaders (and through load_model, a one-line CLI error)."""
    from clinloop.cli import main
    from clinloop.errors import DataError
    from clinloop.models.registry import load_model

    net = tiny_net("spa" if method == "click-litemedsam" else method)
    save_spa(net, tmp_path / "m")
    if method == "click-litemedsam":
        cfg = json.loads((tmp_path / "m" / "config.json").read_text())
        (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "method": method}))
    (tmp_path / "m" / "weights.pt").unlink()
    _stub_backbone_builder(monkeypatch)
    want = f"{tmp_path / 'm' / 'weights.pt'}: cannot read weights (no such file: the folder holds no trained model)"
    with pytest.raises(DataError) as e:
        load_model(tmp_path / "m")
    assert str(e.value) == want
    assert main(["demo", "--out", str(tmp_path / "d"), "--model", str(tmp_path / "m")]) == 2
    assert not (tmp_path / "d").exists()  # refused before writing anything


@pytest.mark.parametrize("method", ["spa", "meduhip"])
def test_training_smoke_and_resume(tmp_path, method):
    from clinloop.data.synthetic import make_synthetic_sample
    from clinloop.models.litemedsam.preprocess import mask_to_model, preprocess
    from clinloop.training.spa import SPATrainer, TrainCase, train

    net = tiny_net(method, cond_width=8)
    enc = net.backbone.image_encoder
    cases = []
    for k in range(2):
        s = make_synthetic_sample((64, 64), seed=k)
        x, info = preprocess(s.image[0])
        with torch.no_grad():
            e = enc(x[None])[0].half()
        cases.append(TrainCase(e, np.stack([mask_to_model(m, info).numpy() > 0.5 for m in s.masks]),
                               np.ones(len(s.masks), bool)))
    before = {k: v.clone() for k, v in net.trainable_state_dict().items()}
    tr = SPATrainer(net, lr=1e-3, n_samples=2, seed=0, user_iterations=2)
    rows = train(tr, cases, 1, tmp_path, save_every=1, progress=False)
    assert len(rows) == 1 and np.isfinite(rows[0]["loss_seg"]) and 0 <= rows[0]["dice_last"] <= 1
    after = net.trainable_state_dict()
    changed = {k.split(".")[0] + "." + k.split(".")[1] for k in after if not torch.equal(after[k], before[k])}
    assert "variant.generator" in changed or "variant.mv_convs" in changed or "variant.mv_out" in changed
    assert any(c.startswith("conditioning") for c in changed)
    assert any(c.startswith("backbone.mask_decoder") for c in changed)
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "train_log.csv").is_file()
    # resume into a fresh trainer: continues at step 1
    net2 = tiny_net(method, cond_width=8)
    tr2 = SPATrainer(net2, lr=1e-3, n_samples=2, seed=0, user_iterations=2)
    tr2.load_state(torch.load(tmp_path / "checkpoint.pt", weights_only=False))
    assert tr2.step == 1
    for k, v in net2.trainable_state_dict().items():
        assert torch.equal(v, after[k])


def test_embedding_path_training_step_and_inference(tmp_path, monkeypatch):
    """The paper's literal path (``path="embedding"``: full-width conditioning of e_x, then the SAM
    decoder once per sample) trains through Algorithm 1: one image of two user iterations updates
    the PDG, every conditioning layer (conv1/conv2 only get a gradient once the zero-initialised
    conv3 has moved, i.e. in the second iteration) and the decoder; afterwards the samples depend
    on z, and the trained net round-trips through save/load and runs a Session."""
    from clinloop.data.synthetic import make_synthetic_sample
    from clinloop.models.litemedsam.preprocess import mask_to_model, preprocess
    from clinloop.models.spa.preference_distribution import GMM
    from clinloop.training.spa import SPATrainer, TrainCase, train

    net = tiny_net(path="embedding")
    torch.nn.init.zeros_(net.conditioning.conv3.weight)  # as built: an untrained net is the plain decoder
    assert net.conditioning.conv1.out_channels == 256 and net.conditioning.residual
    s = make_synthetic_sample((64, 64), seed=0)
    x, info = preprocess(s.image[0])
    with torch.no_grad():
        e = net.backbone.image_encoder(x[None])[0].half()
    case = TrainCase(e, np.stack([mask_to_model(m, info).numpy() > 0.5 for m in s.masks]), np.ones(len(s.masks), bool))
    before = {k: v.clone() for k, v in net.trainable_state_dict().items()}
    tr = SPATrainer(net, lr=1e-3, n_samples=2, seed=0, user_iterations=2, wta_weight=1.0)
    rows = train(tr, [case], 1, tmp_path / "run", save_every=1, progress=False)
    assert len(rows) == 1 and np.isfinite(rows[0]["loss_seg"]) and np.isfinite(rows[0]["loss_mv"])
    after = net.trainable_state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    for layer in ("conv1", "conv2", "conv3"):
        assert f"conditioning.{layer}.weight" in changed, layer
    assert any(k.startswith("backbone.mask_decoder.") for k in changed)
    assert any(k.startswith("backbone.prompt_encoder.") for k in changed)
    assert any(k.startswith("variant.") for k in changed)
    # the samples now differ with z (at initialisation they were all the plain decoder output)
    ex = e.float()[None]
    pts = (torch.tensor([[[128.0, 128.0]]]), torch.tensor([[1]]))
    with torch.no_grad():
        sp, de = net.encode_interaction(pts, None)
        g = GMM(torch.full((16,), 1 / 16), 3 * torch.randn(16, 8, generator=torch.Generator().manual_seed(0)),
                torch.ones(16, 8))
        lg, _, _ = net.gen_mask(ex, sp, de, g, 3, torch.Generator().manual_seed(0))
    assert lg.shape == (3, 256, 256)
    assert (lg[0] - lg[1]).abs().max() > 1e-4
    # save/load keeps the path and the weights; the interactive model runs on it
    save_spa(net, tmp_path / "m")
    _stub_backbone_builder(monkeypatch)
    m = load_spa(tmp_path / "m")
    assert m.config.path == "embedding"
    for k, v in net.trainable_state_dict().items():
        torch.testing.assert_close(m.net.trainable_state_dict()[k], v.half().float())
    m.config.n_samples = 4  # keep the literal path's N decoder passes cheap
    m.disk_cache = False
    p = Session(m, _image(), seed=0).click((25, 20))
    assert p.mask.shape == (40, 52) and p.candidates.shape == (4, 40, 52)
