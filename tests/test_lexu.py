"""LEXU network, heads and losses (Eq. 1) against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clinloop.models.lexu.baselines import VARIANTS, DeepEnsemble, MCDropout, PlainUNet
from clinloop.models.lexu.config import LexuConfig, build_network
from clinloop.models.lexu.heads import head_variance, pairwise_agreement
from clinloop.models.lexu.losses import (
    disagreement_guidance_loss,
    lexu_loss,
    majority_vote,
    mro_targets,
    multi_rater_optimisation_loss,
    rater_variance,
    soft_label,
)
from clinloop.models.lexu.network import LEXU, MultiHeadUNet

W = [4, 6, 8, 8]  # tiny: N_E = 4, N_D = N_p = 3


def _bce(t, z):
    p = 1 / (1 + np.exp(-z))
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


def test_multihead_unet_shapes_2d():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    net = MultiHeadUNet(3, W)
    assert net.n_decoder == 3
    assert net(x).shape == (2, 3, 32, 32)
    assert MultiHeadUNet(3, W, n_heads=1)(x).shape == (2, 1, 32, 32)
    assert MultiHeadUNet(1, W, n_heads=2)(torch.randn(1, 1, 24, 40)).shape == (1, 2, 24, 40)


def test_variants_sample_sets_and_passes():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    expect = {"lexu": 3, "unet": 1, "ensemble": 3, "layer-ensemble": 3, "mc-dropout": 4}
    for name, cls in VARIANTS.items():
        kw = {"ensemble": {"n_members": 3}, "mc-dropout": {"mc_samples": 4}}.get(name, {})
        net = cls(3, W, **kw).eval()
        probs = net.sample_probs(x)
        assert probs.shape == (2, expect[name], 16, 16), name
        assert net.prediction(probs).shape == (2, 16, 16)
        assert net.uncertainty(probs).shape == (2, 16, 16)
    assert DeepEnsemble(3, W, n_members=3).forward_passes == 3
    assert LEXU(3, W).forward_passes == 1
    # MC-dropout passes differ (dropout active), BatchNorm stays in eval mode
    mc = MCDropout(3, W, mc_samples=4).eval()
    p = mc.sample_probs(x)
    assert not torch.equal(p[:, 0], p[:, 1])
    assert all(not m.training for m in mc.modules() if isinstance(m, torch.nn.BatchNorm2d))
    # the plain U-Net's uncertainty is p(1-p)
    pu = PlainUNet(3, W).eval()
    pr = pu.sample_probs(x)
    torch.testing.assert_close(pu.uncertainty(pr), pr[:, 0] * (1 - pr[:, 0]))


def test_lexu_prediction_is_last_head():
    probs = torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(LEXU(3, W).prediction(probs), probs[:, -1])


def test_head_variance_equals_numpy():
    rng = np.random.default_rng(0)
    p = rng.random((2, 5, 7, 6)).astype(np.float32)
    np.testing.assert_allclose(head_variance(torch.from_numpy(p)).numpy(), p.var(axis=1), rtol=1e-5, atol=1e-7)


def test_rater_variance_and_soft_label_skip_invalid_raters():
    rng = np.random.default_rng(1)
    m = rng.random((2, 4, 5, 5)) > 0.5
    valid = np.array([[True, True, False, True], [True, True, True, True]])
    H = rater_variance(torch.from_numpy(m), torch.from_numpy(valid)).numpy()
    S = soft_label(torch.from_numpy(m), torch.from_numpy(valid)).numpy()
    from clinloop.data import fusion

    for b in range(2):
        np.testing.assert_allclose(H[b], m[b][valid[b]].astype(float).var(0), atol=1e-6)
        np.testing.assert_allclose(S[b], fusion.soft_label(m[b], valid[b]), atol=1e-6)
        np.testing.assert_array_equal(majority_vote(torch.from_numpy(m), torch.from_numpy(valid)).numpy()[b] > 0,
                                      fusion.majority_vote(m[b], valid[b]))


def test_dgm_rmse_hand_computed():
    H = torch.tensor([[[0.0, 0.25], [0.25, 0.0]]])
    H_hat = torch.zeros_like(H)
    # sqrt((0.0625 + 0.0625) / 4) = sqrt(0.03125)
    assert float(disagreement_guidance_loss(H, H_hat)) == pytest.approx(math.sqrt(0.03125), rel=1e-6)
    H_hat2 = torch.tensor([[[0.1, 0.25], [0.05, 0.0]]])
    assert float(disagreement_guidance_loss(H, H_hat2)) == pytest.approx(math.sqrt((0.01 + 0.04) / 4), rel=1e-6)
    # finite gradient at H == Ĥ
    z = H.clone().requires_grad_(True)
    disagreement_guidance_loss(H, z).backward()
    assert torch.isfinite(z.grad).all()
    with pytest.raises(ValueError, match="shape"):
        disagreement_guidance_loss(H, torch.zeros(1, 3, 2))


def test_mro_last_head_gets_soft_label_others_a_valid_rater():
    g = torch.Generator().manual_seed(0)
    m = torch.zeros(3, 3, 4, 4, dtype=torch.uint8)
    m[:, 0, :2] = 1  # rater 0: top half
    m[:, 1, :, :2] = 1  # rater 1: left half
    m[:, 2] = 1  # rater 2 (invalid): everything
    valid = torch.tensor([[True, True, False]] * 3)
    t = mro_targets(m, 5, valid, g)
    assert t.shape == (3, 5, 4, 4)
    torch.testing.assert_close(t[:, -1], soft_label(m, valid))
    seen = set()
    for b in range(3):
        for j in range(4):
            k = [r for r in range(2) if torch.equal(t[b, j], m[b, r].float())]
            assert len(k) == 1, "other heads must get exactly one valid rater's mask"
            seen.add(k[0])
    assert seen == {0, 1}  # both valid raters get sampled, the invalid one never


def test_mro_and_lexu_loss_hand_computed():
    # one rater: RS(M) = S(M) = that mask, H = 0 -> every term is known
    rng = np.random.default_rng(2)
    z = rng.normal(size=(1, 3, 2, 2)).astype(np.float32)
    y = np.array([[[[1, 0], [0, 1]]]], dtype=np.uint8)
    expect_mro = sum(_bce(y[0, 0], z[0, j]).mean() for j in range(3))
    mro = multi_rater_optimisation_loss(torch.from_numpy(z), torch.from_numpy(y))
    assert float(mro) == pytest.approx(expect_mro, rel=1e-5)
    p = 1 / (1 + np.exp(-z))
    expect_dgm = np.sqrt((p.var(axis=1) ** 2).mean())
    loss, parts = lexu_loss(torch.from_numpy(z), torch.from_numpy(y), alpha=2.0, beta=5.0)
    assert parts["mro"] == pytest.approx(expect_mro, rel=1e-5)
    assert parts["dgm"] == pytest.approx(expect_dgm, rel=1e-4)
    assert float(loss) == pytest.approx(2.0 * expect_mro + 5.0 * expect_dgm, rel=1e-5)


def test_lexu_loss_dgm_rows_uses_only_those_images():
    # --dgm-clean-only: DGM over the flagged images' pixels, MRO over every image
    rng = np.random.default_rng(5)
    z = rng.normal(size=(3, 3, 2, 2)).astype(np.float32)
    y = np.ones((3, 1, 2, 2), dtype=np.uint8)  # one rater: H = 0
    p = 1 / (1 + np.exp(-z))
    rows = torch.tensor([True, False, True])
    _, parts = lexu_loss(torch.from_numpy(z), torch.from_numpy(y), dgm_rows=rows)
    assert parts["dgm"] == pytest.approx(np.sqrt((p[[0, 2]].var(axis=1) ** 2).mean()), rel=1e-4)
    _, every = lexu_loss(torch.from_numpy(z), torch.from_numpy(y))
    assert parts["mro"] == pytest.approx(every["mro"], rel=1e-6)
    zt = torch.from_numpy(z).requires_grad_(True)
    loss, parts = lexu_loss(zt, torch.from_numpy(y), dgm_rows=torch.zeros(3, dtype=torch.bool))
    assert parts["dgm"] == 0.0
    loss.backward()
    assert torch.isfinite(zt.grad).all()


def test_boundary_band_matches_scipy_morphology():
    from scipy.ndimage import binary_dilation, binary_erosion

    from clinloop.models.lexu.losses import boundary_band

    rng = np.random.default_rng(3)
    m = (rng.random((2, 3, 12, 10)) > 0.7).astype(np.uint8)
    valid = np.array([[True, True, False], [True, False, False]])
    for r in (1, 2):
        got = boundary_band(torch.from_numpy(m), torch.from_numpy(valid), r).numpy()
        k = np.ones((2 * r + 1, 2 * r + 1), bool)
        for b in range(2):
            u = m[b][valid[b]].any(0)
            # outside the image: background for the dilation, foreground-preserving for the erosion
            want = binary_dilation(u, k) & ~binary_erosion(u, k, border_value=1)
            assert np.array_equal(got[b].astype(bool), want)
    # hand case: a 2x2 square in an 8x8 image -> its 4x4 (r = 1) / 6x6 (r = 2) dilation
    sq = np.zeros((1, 1, 8, 8), np.uint8)
    sq[0, 0, 3:5, 3:5] = 1
    band = boundary_band(torch.from_numpy(sq)).numpy()[0]
    assert band.sum() == 16 and band[2:6, 2:6].all()
    assert boundary_band(torch.from_numpy(sq), radius=2).sum() == 36
    assert boundary_band(torch.zeros(1, 2, 5, 5)).sum() == 0
    with pytest.raises(ValueError, match="radius"):
        boundary_band(torch.from_numpy(sq), radius=0)


def test_distortion_disagreement_target_raises_h_only_on_the_band():
    from clinloop.models.lexu.losses import boundary_band, distortion_disagreement_target, rater_variance

    m = np.zeros((3, 4, 10, 10), np.uint8)
    m[:, :, 3:7, 3:7] = 1
    m[:, 0, 3:7, 6] = 0  # rater 0 leaves out one column: H = 3/16 there
    mt = torch.from_numpy(m)
    H = rater_variance(mt)
    out = distortion_disagreement_target(H, mt, None, torch.tensor([0.0, 0.4, 1.0]), 0.25)
    assert torch.equal(out[0], H[0])  # a clean image keeps its H
    for b, r, floor in ((1, 1, 0.1), (2, 2, 0.25)):  # d < 0.5: the 1-px band; d >= 0.5: the 2-px band
        band = boundary_band(mt, radius=r)[b].bool()
        assert torch.equal(out[b][~band], H[b][~band])
        assert torch.allclose(out[b][band], torch.maximum(H[b][band], torch.tensor(floor)))
    assert float(out[1, 4, 6]) == pytest.approx(3 / 16)  # max(H, 0.1) keeps the larger H
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        distortion_disagreement_target(H, mt, None, torch.tensor([0.0, 1.2, 0.0]), 0.25)
    with pytest.raises(ValueError, match=r"\[0, 0.25\]"):
        distortion_disagreement_target(H, mt, None, torch.tensor([0.0, 0.5, 0.0]), 0.3)
    with pytest.raises(ValueError, match="strength must be"):
        distortion_disagreement_target(H, mt, None, torch.tensor([0.1]), 0.25)
    # lexu_loss uses it as the DGM target: with Ĥ = 0 (one logit for every head) the DGM
    # term is the RMSE of the raised target; without D it is Eq. 1's
    z = torch.zeros(3, 3, 10, 10)
    d = torch.tensor([0.0, 0.4, 1.0])
    _, parts = lexu_loss(z, mt, distortion=d, distortion_disagreement=0.25)
    assert parts["dgm"] == pytest.approx(float(torch.sqrt((out ** 2).mean())), rel=1e-5)
    _, plain = lexu_loss(z, mt, distortion=d)
    assert plain["dgm"] == pytest.approx(float(torch.sqrt((H ** 2).mean())), rel=1e-5)


def test_distortion_strength_on_the_difficulty_test_scale():
    from clinloop.training.lexu_augment import distortion_strength

    assert distortion_strength(None, None, None) == 0.0
    assert distortion_strength(None, None, 0.15) == pytest.approx(1.0)
    assert distortion_strength(2.5, None, None) == pytest.approx(1.0)
    assert distortion_strength(0.7, None, None) == pytest.approx(np.log(1 / 0.7) / np.log(2.5))
    assert distortion_strength(1.75, 1.0, 0.03) == pytest.approx(max(np.log(1.75) / np.log(2.5), 0.5))


def test_pairwise_agreement_matches_metrics():
    from clinloop import metrics

    rng = np.random.default_rng(3)
    p = rng.random((1, 4, 6, 6)).astype(np.float32)
    got = float(pairwise_agreement(torch.from_numpy(p))[0])
    assert got == pytest.approx(metrics.pairwise_dice(p[0] > 0.5), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [dict(widths=[4]), dict(n_heads=4), dict(n_heads=0), dict(dropout=1.0), dict(encoder="resnet50"), dict(in_channels=0)],
)
def test_network_bad_hyperparameters(kwargs):
    base = dict(in_channels=3, widths=W)
    base.update(kwargs)
    with pytest.raises(ValueError):
        MultiHeadUNet(**base)


@pytest.mark.parametrize(
    "kwargs",
    [dict(method="resnet"), dict(alpha=-1), dict(beta=float("nan")), dict(size=100), dict(widths=[8, 8]),
     dict(n_members=1), dict(mc_samples=1), dict(lr=0), dict(dropout=1.5)],
)
def test_config_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError):
        LexuConfig(**kwargs)


def test_loss_bad_inputs():
    z = torch.zeros(1, 2, 3, 3)
    m = torch.zeros(1, 2, 3, 3)
    with pytest.raises(ValueError, match="alpha"):
        lexu_loss(z, m, alpha=-1.0)
    with pytest.raises(ValueError, match="beta"):
        lexu_loss(z, m, beta=float("inf"))
    with pytest.raises(ValueError, match="valid rater"):
        lexu_loss(z, m, torch.zeros(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="masks"):
        lexu_loss(z, torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError):
        LEXU(3, [4, 8])  # one head: no variance to guide


def test_config_roundtrip(tmp_path):
    cfg = LexuConfig(method="ensemble", widths=[4, 8, 8], size=32, n_members=3)
    cfg.save(tmp_path)
    again = LexuConfig.load(tmp_path)
    assert again == cfg
    assert build_network(again).forward_passes == 3


def test_real_riga_stacking_respects_rater_ok(shared_data):
    """RIGA case20 has three unrecoverable outlines: they must be invalid raters,
    not empty masks, in the training tensors and in H."""
    from clinloop.data import load_dataset
    from clinloop.training.lexu import stack_samples

    ds = load_dataset(shared_data / "riga_binrushed2", structure="cup")
    i = ds.case_ids.index("case20")
    s = ds[i]
    x, m, v, kept = stack_samples([s], 64, 3)
    assert x.shape == (1, 3, 64, 64) and m.shape == (1, 6, 64, 64)
    np.testing.assert_array_equal(v[0].numpy(), s.rater_valid)
    assert v[0].sum() == 3
    H = rater_variance(m, v)[0].numpy()
    mv = m[0].numpy()[s.rater_valid].astype(float)
    np.testing.assert_allclose(H, mv.var(0), atol=1e-6)
    # x is z-scored per channel
    np.testing.assert_allclose(x.mean(dim=(2, 3)).numpy(), 0, atol=1e-4)


def test_shipped_riga_cup_model_regression(shared_data):
    """The shipped model on held-out RIGA photos (never trained on): Dice of
    the thresholded prediction vs the majority vote at full 512² resolution
    (measured at ship time: case08 0.862, case47 0.763) and the image-level
    uncertainty (case08 19.17, case47 14.92)."""
    from clinloop import metrics
    from clinloop.data import fusion, load_dataset
    from clinloop.models.registry import load_model

    pred = load_model("lexu-riga-cup")
    assert pred.cfg.method == "lexu" and pred.forward_passes == 1
    ds = load_dataset(shared_data / "riga_binrushed2", structure="cup")
    for case, d_min, u_ref in (("case08", 0.84, 19.17), ("case47", 0.74, 14.92)):
        s = ds[ds.case_ids.index(case)]
        prob, unc, u = pred.predict(s.image)
        assert prob.shape == unc.shape == (512, 512)
        assert metrics.dice(prob > 0.5, fusion.majority_vote(s.masks, s.rater_valid)) > d_min
        assert u == pytest.approx(u_ref, rel=0.01)


def test_intensity_augment_blur_matches_scipy_and_keeps_zscore():
    import torch
    from scipy.ndimage import gaussian_filter

    from clinloop.models.lexu.model import normalise
    from clinloop.training.lexu_augment import augment_batch, gaussian_blur

    rng = np.random.default_rng(0)
    img = rng.random((2, 20, 24)).astype(np.float32)
    sigma = 1.3
    got = gaussian_blur(torch.from_numpy(img), sigma).numpy()
    # torch "reflect" padding is scipy's "mirror"; the kernel spans ceil(3 sigma) px each side
    want = np.stack([gaussian_filter(c, sigma, mode="mirror", truncate=4 / sigma) for c in img])
    assert np.abs(got - want).max() < 1e-5
    x = normalise(torch.from_numpy(rng.random((3, 3, 16, 16)).astype(np.float32)))
    g = torch.Generator().manual_seed(0)
    same, rows, d = augment_batch(x, 0.0, g)
    assert same is x and not rows.any() and not d.any()
    y, rows, d = augment_batch(x, 1.0, g)
    assert rows.all() and y.shape == x.shape and not torch.allclose(y, x)
    assert ((d > 0) & (d <= 1)).all()
    # p = 0.3: the rows flagged distorted are exactly the ones that changed
    x12 = normalise(torch.from_numpy(rng.random((12, 1, 16, 16)).astype(np.float32)))
    z, rows, d = augment_batch(x12, 0.3, g)
    changed = (z - x12).abs().amax(dim=(1, 2, 3)) > 1e-6
    assert 0 < int(rows.sum()) < 12 and torch.equal(changed, rows) and torch.equal(d > 0, rows)
    assert torch.allclose(y.mean(dim=(2, 3)), torch.zeros(3, 3), atol=1e-5)
    assert torch.allclose(y.std(dim=(2, 3)), torch.ones(3, 3), atol=1e-4)
