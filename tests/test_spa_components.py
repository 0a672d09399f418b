"""SPA components: GMM sampling/E-step, split conditioning, candidates, variants, generator."""
import math

import numpy as np
import pytest
import torch

from clinloop.models.spa import candidates as cand
from clinloop.models.spa.conditioning import PreferenceConditioning
from clinloop.models.spa.config import SPAConfig
from clinloop.models.spa.distribution_generator import PreferenceDistributionGenerator, interaction_vector
from clinloop.models.spa.preference_distribution import (GMM, component_log_density, estep_target, log_prob,
                                                         responsibilities, sample)
from clinloop.models.spa.variants import VARIANTS, build_variant


def _gmm():
    return GMM(torch.tensor([0.25, 0.75]), torch.tensor([[-3.0, 0.0], [2.0, 1.0]]), torch.tensor([[0.5, 1.0], [1.0, 2.0]]))


def test_sampling_reproducible_and_moments():
    g = _gmm()
    z1, c1 = sample(g, 20000, torch.Generator().manual_seed(7))
    z2, c2 = sample(g, 20000, torch.Generator().manual_seed(7))
    assert torch.equal(z1, z2) and torch.equal(c1, c2)
    z3, _ = sample(g, 20000, torch.Generator().manual_seed(8))
    assert not torch.equal(z1, z3)
    # mixture weights, per-component means and stds
    assert abs(float((c1 == 1).float().mean()) - 0.75) < 0.015
    for m in range(2):
        zm = z1[c1 == m]
        np.testing.assert_allclose(zm.mean(0).numpy(), g.mu[m].numpy(), atol=0.06)
        np.testing.assert_allclose(zm.std(0).numpy(), g.sigma[m].numpy(), rtol=0.04)
    # overall mean = sum pi mu
    np.testing.assert_allclose(z1.mean(0).numpy(), (g.pi[:, None] * g.mu).sum(0).numpy(), atol=0.06)


def test_sampling_is_reparameterised():
    g = _gmm()
    mu = g.mu.clone().requires_grad_(True)
    z, _ = sample(GMM(g.pi, mu, g.sigma), 5, torch.Generator().manual_seed(0))
    z.sum().backward()
    assert float(mu.grad.sum()) == 10.0  # dz/dmu = 1 for each of 5 samples x 2 dims


def test_estep_hand_computed():
    g = _gmm()
    z = torch.tensor([[-3.0, 0.0], [2.0, 1.0], [0.0, 0.0]])
    # hand computation with the Gaussian pdf
    def pdf(x, m, s):
        return math.prod(math.exp(-0.5 * ((xi - mi) / si) ** 2) / (si * math.sqrt(2 * math.pi)) for xi, mi, si in zip(x, m, s))
    exp = []
    for x in z.tolist():
        a = [float(g.pi[m]) * pdf(x, g.mu[m].tolist(), g.sigma[m].tolist()) for m in range(2)]
        exp.append([v / sum(a) for v in a])
    np.testing.assert_allclose(responsibilities(z, g).numpy(), np.array(exp), rtol=1e-5)
    ld = component_log_density(z, g)
    np.testing.assert_allclose(ld[0, 0].item(), math.log(pdf([-3, 0], [-3, 0], [0.5, 1.0])), rtol=1e-6)
    # log p(z) cross-check with scipy
    from scipy.stats import multivariate_normal as mvn
    ref = np.log(sum(float(g.pi[m]) * mvn(g.mu[m].numpy(), np.diag(g.sigma[m].numpy() ** 2)).pdf(z.numpy()) for m in range(2)))
    np.testing.assert_allclose(log_prob(z, g).numpy(), ref, rtol=1e-5)
    # E-step target: all weight on sample 0 -> its responsibilities
    t = estep_target(z, g, torch.tensor([1.0, 0.0, 0.0]), temperature=1e-3)
    np.testing.assert_allclose(t.numpy(), exp[0], atol=1e-5)
    assert abs(float(t.sum()) - 1) < 1e-6


def test_gmm_json_roundtrip_and_errors():
    g = _gmm()
    h = GMM.from_json(g.to_json(), dim=2)
    assert torch.equal(h.mu, g.mu) and torch.equal(h.pi, g.pi)
    with pytest.raises(ValueError, match="latent dimension"):
        GMM.from_json(g.to_json(), dim=3)
    bad = g.to_json()
    bad["pi"] = [0.5, 0.7]
    with pytest.raises(ValueError, match="sum"):
        GMM.from_json(bad)
    with pytest.raises(ValueError):
        GMM.from_json({"mu": [[0.0]]})
    bad["pi"] = [1.5, -0.5]
    with pytest.raises(ValueError, match="pi >= 0"):
        GMM.from_json(bad)
    one_hot = g.to_json()
    one_hot["pi"] = [1.0, 0.0]  # a softmax that underflowed: still a valid profile, samples only component 0
    h = GMM.from_json(one_hot, dim=2)
    _, comp = sample(h, 50, torch.Generator().manual_seed(0))
    assert (comp == 0).all()


@pytest.mark.parametrize("k1,k2,residual,cout", [(3, 1, False, 1), (3, 3, True, 16), (1, 1, False, 4)])
def test_split_conditioning_equals_concat(k1, k2, residual, cout):
    torch.manual_seed(0)
    m = PreferenceConditioning(16, 5, 8, cout, k1=k1, k2=k2, residual=residual)
    for p in m.parameters():  # make the zero-initialised last conv non-trivial
        torch.nn.init.normal_(p, std=0.3)
    e = torch.randn(1, 16, 9, 11)
    z = torch.randn(6, 5)
    a = m(e, z)
    b = m.forward_concat(e, z)
    assert a.shape == (6, cout, 9, 11)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # float32 sums in other orders: ~1e-5 apart
    with torch.inference_mode():  # the channels-last inference path (1x1 tails) gives the same numbers
        c = m(e, z)
    torch.testing.assert_close(c, b, rtol=1e-4, atol=1e-4)


def test_conditioning_starts_as_identity_and_checks_shapes():
    m = PreferenceConditioning(8, 3, 4, 8, residual=True)
    e = torch.randn(1, 8, 5, 5)
    torch.testing.assert_close(m(e, torch.randn(2, 3)), e.expand(2, -1, -1, -1))
    with pytest.raises(ValueError, match="latents"):
        m(e, torch.randn(2, 4))
    with pytest.raises(ValueError, match="embedding"):
        m(torch.randn(1, 7, 5, 5), torch.randn(2, 3))
    with pytest.raises(ValueError, match="out_channels"):
        PreferenceConditioning(8, 3, 4, 2, residual=True)


def _blob(cy, cx, r, n=32):
    yy, xx = np.mgrid[:n, :n]
    return torch.from_numpy((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)


def test_kmeans_recovers_known_clusters():
    protos = [_blob(8, 8, 5), _blob(20, 22, 6), _blob(16, 16, 10), _blob(25, 6, 4)]
    rng = np.random.default_rng(0)
    masks, truth = [], []
    for k, p in enumerate(protos):
        for _ in range(6 + 2 * k):
            noisy = p.clone()
            flip = torch.from_numpy(rng.random(p.shape) < 0.005)
            masks.append(noisy ^ flip)
            truth.append(k)
    masks = torch.stack(masks)
    c = cand.representative_candidates(masks, 4, seed=3)
    assert c.shape == (4, 32, 32) and c.dtype == torch.bool
    # the binarised centroids are the prototypes (noise averages out), largest cluster first
    for i, k in enumerate([3, 2, 1, 0]):
        assert int((c[i] ^ protos[k]).sum()) == 0
    # the K-means partition is the true one
    _, labels = cand.kmeans(masks.flatten(1).float(), 4, seed=3)
    truth = np.array(truth)
    for k in range(4):
        assert len(set(labels[truth == k].tolist())) == 1
    assert len(set(labels.tolist())) == 4
    # deterministic for a seed; clustering pooled masks gives the same candidates here
    assert torch.equal(c, cand.representative_candidates(masks, 4, seed=3))
    assert torch.equal(c, cand.representative_candidates(masks, 4, seed=3, pool=2))


@pytest.mark.parametrize("shape,pool", [((256, 256), 2), ((256, 170), 2), ((171, 256), 2), ((60, 64), 3), ((64, 64), 4)])
def test_pooled_fraction_equals_avg_pool(shape, pool):
    g = torch.Generator().manual_seed(0)
    m = torch.rand(6, *shape, generator=g) > 0.5
    ref = torch.nn.functional.avg_pool2d(m.float()[:, None], pool, ceil_mode=True).flatten(1)
    assert torch.equal(cand.pooled_fraction(m, pool), ref)
    crop = m[:, : shape[0] - 2, : shape[1] - 4]  # a strided view, as the session clusters the image part
    ref = torch.nn.functional.avg_pool2d(crop.float()[:, None], pool, ceil_mode=True).flatten(1)
    assert torch.equal(cand.pooled_fraction(crop, pool), ref)


def test_candidates_fewer_distinct_masks_than_k():
    a, b = _blob(8, 8, 4), _blob(20, 20, 4)
    c = cand.representative_candidates(torch.stack([a, a, a, b]), 4, seed=0)
    assert torch.equal(c[0], a) and torch.equal(c[1], b) and torch.equal(c[2], a) and torch.equal(c[3], b)


def test_volume_candidates_are_cluster_means_per_slice_by_size():
    # 4 samples over 2 slices of an 8x8 frame: samples 0 and 1 identical (slice 0: a 2x4 bar, slice 1: a 2x2
    # square), sample 2 the same less one pixel of the square, sample 3 a full-width bar and nothing on slice 1
    ys0 = torch.zeros(4, 2, 8, dtype=torch.bool)  # slice 0 cropped to rows 3..4, all 8 columns
    ys0[:3, :, 2:6] = True
    ys0[3] = True
    ys1 = torch.zeros(4, 2, 2, dtype=torch.bool)  # slice 1 cropped to rows 0..1, cols 6..7
    ys1[:3] = True
    ys1[2, 0, 0] = False
    out = cand.volume_candidates([ys0, ys1], [(3, 5, 0, 8), (0, 2, 6, 8)], k=4, n=4, seed=0, size=(8, 8))
    assert [tuple(o.shape) for o in out] == [(4, 8, 8), (4, 8, 8)]
    bar, wide, sq, empty = (np.zeros((8, 8), bool) for _ in range(4))
    bar[3:5, 2:6] = wide[3:5] = sq[0:2, 6:8] = True
    sq_less = sq.copy()
    sq_less[0, 6] = False
    pair = [(out[0][k].numpy().tobytes(), out[1][k].numpy().tobytes()) for k in range(4)]
    # 3 distinct samples: clusters {0, 1}, {2}, {3}; the pair first (largest), the 4th slot repeats it
    assert pair[0] == pair[3] == (bar.tobytes(), sq.tobytes())
    assert set(pair[1:3]) == {(bar.tobytes(), sq_less.tobytes()), (wide.tobytes(), empty.tobytes())}
    none = cand.volume_candidates([torch.zeros(4, 0, 0, dtype=torch.bool)], [(0, 0, 0, 0)], 2, 4, 0, (8, 8))
    assert len(none) == 1 and none[0].shape == (2, 8, 8) and not none[0].any()  # no sample reached the slice


def test_y_app_and_differences():
    masks = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 1, 0]], dtype=torch.bool)
    p, y = cand.aggregate(masks)
    np.testing.assert_allclose(p.numpy(), [1, 2 / 3, 2 / 3, 0])
    assert y.tolist() == [True, True, True, False]
    r = torch.tensor([[1, 0, 0, 1]], dtype=torch.bool)
    d = cand.differences(r, y)
    assert d[0, 0].tolist() == [False, False, False, True]  # added
    assert d[0, 1].tolist() == [False, True, True, False]  # removed
    # same convention as Proposal.candidate_differences
    from clinloop.interaction.proposal import Proposal
    pr = Proposal(mask=y.numpy(), probability=p.numpy(), uncertainty=p.numpy(), candidates=r.numpy())
    assert np.array_equal(pr.candidate_differences(), d.numpy())


def test_kmeans_errors():
    with pytest.raises(ValueError):
        cand.kmeans(torch.zeros(2, 3), 3)


def test_generator_and_variants():
    gen = PreferenceDistributionGenerator(12, 16, 4)
    with torch.no_grad():
        g = gen(torch.randn(12))
    assert g.pi.shape == (16,) and g.mu.shape == (16, 4) and (g.sigma > 0).all()
    assert abs(float(g.pi.sum()) - 1) < 1e-6
    assert float(g.mu.std()) > 0.3  # components start spread out
    sp = torch.randn(1, 2, 6)
    assert interaction_vector(sp, torch.randn(1, 6, 4, 4)).shape == (1, 12)
    assert torch.equal(interaction_vector(torch.zeros(1, 0, 6), torch.ones(1, 6, 4, 4))[0, :6], torch.zeros(6))
    feats = torch.randn(1, 256, 8, 8)
    for name in VARIANTS:
        v = build_variant(name, 12, 16, 4)
        out = v(torch.randn(1, 12), feats)
        assert out.pi.shape == (16,) and out.mu.shape == (16, 4)
        n_mv, n_pi = len(v.mean_variance_parameters()), len(v.weight_parameters())
        expect = {"spa": (1, 1), "spa-random-gmm": (0, 0), "spa-mean-variance": (1, 0), "spa-weights": (0, 1),
                  "meduhip": (1, 1)}[name]
        assert (n_mv > 0, n_pi > 0) == tuple(map(bool, expect)), name
    with pytest.raises(ValueError, match="unknown SPA variant"):
        build_variant("spa-all", 12, 16, 4)


def test_config_json(tmp_path):
    c = SPAConfig(method="meduhip", latent_dim=4)
    c.save(tmp_path / "config.json")
    assert SPAConfig.load(tmp_path / "config.json") == c
    with pytest.raises(ValueError, match="unknown SPA method"):
        SPAConfig(method="nope")
    with pytest.raises(ValueError, match="n_samples"):
        SPAConfig(n_samples=0)
