"""MECCA components against hand-computed values (mecca.txt Eq. 1-6, §4.3)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clinloop.models.mecca import advice, hints
from clinloop.models.mecca.confidence import (ConfidenceNet, alignment_target, confidence_loss,
                                              symmetric_bce, symmetric_bce_from_logits)
from clinloop.models.mecca.environment import (ACTIONS, action_values, count_misunderstanding, initial_probability,
                                               make_state, opposite_action, transition)
from clinloop.models.mecca.label_generation import generate_labels
from clinloop.models.mecca.pnet import PolicyValueNet, SegmentationNet
from clinloop.models.mecca.reward import cross_entropy, gain, plain_reward, shaped_reward, total_reward


# ------------------------------------------------------------------ Eq. 1
def test_action_set_is_the_papers():
    assert sorted(ACTIONS) == [-0.4, -0.2, -0.1, 0.1, 0.2, 0.4]
    idx = torch.arange(6)
    np.testing.assert_allclose(action_values(opposite_action(idx)), -action_values(idx))


def test_transition_adds_and_clips():
    p = torch.tensor([0.05, 0.5, 0.95, 0.3, 0.5])
    idx = torch.tensor([0, 3, 5, 1, 2])  # -0.4, +0.1, +0.4, -0.2, -0.1
    np.testing.assert_allclose(transition(p, idx), [0.0, 0.6, 1.0, 0.1, 0.4], atol=1e-7)
    assert torch.all(initial_probability((2, 1, 3, 3)) == 0.5)
    with pytest.raises(ValueError, match="action indices"):
        transition(p, torch.tensor([0, 1, 2, 3, 6]))
    with pytest.raises(ValueError, match="shape"):
        transition(p, torch.tensor([0, 1]))


def test_state_channels_order():
    b, p, h = (torch.full((1, 1, 2, 2), v) for v in (1.0, 0.5, -1.0))
    s = make_state(b, p, h)
    assert s.shape == (1, 3, 2, 2) and s[0, :, 0, 0].tolist() == [1.0, 0.5, -1.0]


def test_misunderstanding_counts_moves_against_the_label():
    p0 = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.0, 1.0])
    p1 = torch.tensor([0.6, 0.4, 0.6, 0.4, 0.0, 1.0])
    y = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    # agent 1 (y=1, down) and agent 2 (y=0, up) misunderstand; unmoved agents do not count
    assert count_misunderstanding(p0, p1, y) == 2


# ------------------------------------------------------------------ Eq. 4-5
def test_reward_matches_hand_computation():
    p0 = torch.tensor([0.5, 0.5, 0.3])
    p1 = torch.tensor([0.9, 0.7, 0.1])
    y = torch.tensor([1.0, 0.0, 0.0])
    c = torch.tensor([0.25, 0.9, 0.5])
    g = [math.log(2) + math.log(0.9), math.log(2) - (-math.log(0.3)), -math.log(0.7) + math.log(0.9)]
    np.testing.assert_allclose(cross_entropy(p0, y), [math.log(2), math.log(2), -math.log(0.7)], rtol=1e-6)
    np.testing.assert_allclose(gain(p0, p1, y), g, rtol=1e-6)
    np.testing.assert_allclose(g[:2], [0.5877867, -0.5108256], rtol=1e-6)
    r = shaped_reward(p0, p1, y, c, alpha=0.8, beta=1.0)
    np.testing.assert_allclose(r, [0.8 * 1.75 * g[0], 0.8 * 1.1 * g[1], 0.8 * 1.5 * g[2]], rtol=1e-6)
    np.testing.assert_allclose(r[:2], [0.8229014, -0.4495265], rtol=1e-6)
    r2 = shaped_reward(p0, p1, y, c, alpha=0.8, beta=2.0)
    np.testing.assert_allclose(r2[0], 0.8 * 1.75**2 * g[0], rtol=1e-6)
    np.testing.assert_allclose(plain_reward(p0, p1, y), g, rtol=1e-6)
    np.testing.assert_allclose(total_reward(r[None]), [float(r.sum())], rtol=1e-6)


def test_low_confidence_punishes_a_wrong_action_more():
    p0, p1, y = torch.tensor([0.5]), torch.tensor([0.9]), torch.tensor([0.0])
    assert shaped_reward(p0, p1, y, torch.tensor([0.1])) < shaped_reward(p0, p1, y, torch.tensor([0.9])) < 0


# ------------------------------------------------------------------ Eq. 2-3
def test_alignment_target_eq3():
    a = torch.tensor([0.2, -0.1, 0.4, -0.4])
    y = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert alignment_target(a, y).tolist() == [1.0, 0.0, 0.0, 1.0]


def test_symmetric_bce_hand_computed():
    c_a, c_neg = torch.tensor([0.8]), torch.tensor([0.3])
    np.testing.assert_allclose(symmetric_bce(c_a, c_neg, torch.tensor([1.0])), -math.log(0.8) - math.log(0.7), rtol=1e-6)
    np.testing.assert_allclose(symmetric_bce(c_a, c_neg, torch.tensor([0.0])), -math.log(0.2) - math.log(0.3), rtol=1e-6)
    np.testing.assert_allclose(float(symmetric_bce(c_a, c_neg, torch.tensor([1.0]))), 0.5798185, rtol=1e-6)
    # the logit form agrees
    lg = lambda c: torch.log(c / (1 - c))
    np.testing.assert_allclose(symmetric_bce_from_logits(lg(c_a), lg(c_neg), torch.tensor([0.0])), 2.8134107, rtol=1e-5)


def test_confidence_loss_uses_the_mirrored_action_channel():
    # one agent, logits for the 6 actions; action +0.2 (index 4), its mirror -0.2 is index 1
    probs = torch.tensor([0.5, 0.3, 0.5, 0.5, 0.8, 0.5])
    logits = torch.log(probs / (1 - probs)).view(1, 6, 1, 1)
    idx = torch.tensor([[[[4]]]])
    y = torch.ones(1, 1, 1, 1)
    loss = confidence_loss(logits, idx, action_values(idx), y)  # g = 1
    np.testing.assert_allclose(float(loss), -math.log(0.8) - math.log(1 - 0.3), rtol=1e-5)


def test_confidence_loss_class_balanced_weights():
    # 1 foreground + 3 background agents, all take -0.4 (index 0; mirror +0.4 is index 5)
    probs = torch.tensor([0.9, 0.5, 0.5, 0.5, 0.5, 0.2])
    logits = torch.log(probs / (1 - probs)).view(1, 6, 1, 1).expand(1, 6, 1, 4).contiguous()
    idx = torch.zeros(1, 1, 1, 4, dtype=torch.long)
    y = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 1, 1, 4)
    bg = -math.log(0.9) - math.log(0.8)  # g = 1: 0.32850
    fg = -math.log(0.1) - math.log(0.2)  # g = 0: 3.91202
    plain = confidence_loss(logits, idx, action_values(idx), y)
    np.testing.assert_allclose(float(plain), (3 * bg + fg) / 4, rtol=1e-5)  # 1.22438, background-dominated
    w = torch.tensor([2.0, 2 / 3, 2 / 3, 2 / 3]).view(1, 1, 1, 4)  # balanced_weights(y)
    balanced = confidence_loss(logits, idx, action_values(idx), y, w)
    np.testing.assert_allclose(float(balanced), (bg + fg) / 2, rtol=1e-5)  # 2.12026: mean of the class means
    np.testing.assert_allclose(float(balanced), 2.1202631, rtol=1e-5)


def test_background_biased_confidence_makes_lowering_then_raising_the_nodule_pay():
    """The 3-D failure: with C saying "decrease is aligned" on a nodule voxel (c = 0.95 for
    -0.4, 0.05 for +0.4), Eq. 4 pays more for 0.5 -> 0.1 -> 0.5 than for 0.5 -> 0.9 -> 1.0;
    with a correct C (0.05 / 0.95) the detour is punished."""
    y = torch.tensor([1.0])
    up = [(0.5, 0.9), (0.9, 1.0)]
    detour = [(0.5, 0.1), (0.1, 0.5)]

    def ret(path, c_up, c_down):
        return sum(float(shaped_reward(torch.tensor([a]), torch.tensor([b]), y,
                                       torch.tensor([c_up if b > a else c_down]))) for a, b in path)

    np.testing.assert_allclose(ret(up, 0.05, 0.95), 1.0657, atol=1e-3)
    np.testing.assert_allclose(ret(detour, 0.05, 0.95), 1.1589, atol=1e-3)
    assert ret(detour, 0.05, 0.95) > ret(up, 0.05, 0.95)
    assert ret(detour, 0.95, 0.05) < 0 < ret(up, 0.95, 0.05)
    # the plain gain (mecca-no-confidence) telescopes: the detour earns exactly 0
    assert abs(sum(float(plain_reward(torch.tensor([a]), torch.tensor([b]), y)) for a, b in detour)) < 1e-6


# ------------------------------------------------------------------ Eq. 6
def test_label_generation_eq6_with_threshold():
    a = torch.tensor([0.2, 0.2, -0.1, -0.1, 0.4])
    c = torch.tensor([0.9, 0.1, 0.9, 0.3, 0.6])
    y_hat, mask = generate_labels(a, c, delta=0.8)
    assert y_hat.tolist() == [1.0, 0.0, 0.0, 1.0, 1.0]
    assert mask.tolist() == [True, True, True, False, False]
    _, mask5 = generate_labels(a, c, delta=0.5)
    assert mask5.all()
    with pytest.raises(ValueError, match="delta"):
        generate_labels(a, c, delta=1.5)


# ------------------------------------------------------------------ hints
def _square(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[tuple(slice(lo, hi) for _ in shape)] = True
    return m


def test_clicks_fall_on_wrong_boundary_points():
    label = _square((20, 20), 5, 15)
    rng = np.random.default_rng(0)
    clicks = hints.simulate_clicks(np.zeros_like(label), label, 8, rng)  # everything missed
    assert len(clicks) == 8
    inner = label & ~np.pad(label, 1)[2:, 1:-1] | label & ~np.pad(label, 1)[:-2, 1:-1] \
        | label & ~np.pad(label, 1)[1:-1, 2:] | label & ~np.pad(label, 1)[1:-1, :-2]
    for (x, y), pos in clicks:
        assert pos and inner[int(y), int(x)]  # (x, y) = (column, row)
    # over-segmentation by one pixel: clicks are negative, on the outer contour
    pred = _square((20, 20), 4, 16)
    for (x, y), pos in hints.simulate_clicks(pred, label, 5, rng):
        assert not pos and pred[int(y), int(x)] and not label[int(y), int(x)]
    # a perfect prediction gets no clicks
    assert hints.simulate_clicks(label, label, 5, rng) == []


def test_clicks_in_3d_and_off_boundary_errors():
    label = _square((10, 12, 12), 3, 8)
    rng = np.random.default_rng(1)
    for (x, y, z), pos in hints.simulate_clicks(np.zeros_like(label), label, 4, rng):
        assert pos and label[int(z), int(y), int(x)]
    pred = label.copy()
    pred[0, 0, 0] = True  # a far false positive, the boundary itself is right
    assert hints.simulate_clicks(pred, label, 3, rng) == [((0.0, 0.0, 0.0), False)]


def test_hint_map_values():
    h = hints.hint_map([((3.0, 2.0), True), ((10.0, 10.0), False)], (16, 16), sigma=2.0)
    assert h.shape == (16, 16) and h.dtype == np.float32
    assert h[2, 3] == pytest.approx(1.0) and h[10, 10] == pytest.approx(-1.0)
    assert h[2, 5] == pytest.approx(math.exp(-4 / 8), rel=1e-5)
    assert h.min() >= -1 and h.max() <= 1 and h[15, 0] == 0


# ------------------------------------------------------------------ advice
@pytest.mark.parametrize("shape", [(40, 40), (16, 24, 24)])
def test_advice_regions_least_confident_first(shape):
    rng = np.random.default_rng(0)
    img = rng.normal(size=shape)
    conf = np.linspace(0, 1, int(np.prod(shape))).reshape(shape) + 0.01 * rng.normal(size=shape)
    labels = advice.supervoxels(img, 30, 0.1, (2, 2, 2))
    regions = advice.advice_regions(img, conf, k=5, labels=labels)
    assert len(regions) == 5
    assert all(r.shape == shape and r.dtype == bool and r.any() for r in regions)
    assert int(np.sum(regions, axis=0).max()) == 1  # disjoint
    means = [conf[r].mean() for r in regions]
    assert means == sorted(means)
    # nothing outside the 5 is less confident than the 5th
    others = [conf[labels == l].mean() for l in np.unique(labels) if not any((labels == l)[r].all() for r in regions)]
    assert min(others) >= means[-1]


def test_segment_count_declines_over_steps():
    n = [advice.n_segments_at(t, 100, 0.85, 20) for t in range(12)]
    assert n[0] == 100 and all(a >= b for a, b in zip(n, n[1:])) and n[-1] == 20


# ------------------------------------------------------------------ networks
@pytest.mark.parametrize("spatial,down", [((17, 22), 1), ((9, 10, 11), 1), ((9, 10, 11), 2)])
def test_network_shapes(spatial, down):
    torch.manual_seed(0)
    nd = len(spatial)
    s = torch.randn(2, 3, *spatial)
    net = PolicyValueNet(nd, width=4, head_dilations=(2, 4), downsample=down)
    logits, v = net(s)
    assert logits.shape == (2, 6, *spatial) and v.shape == (2, 1, *spatial)
    assert torch.equal(net.greedy(s), logits.argmax(1, keepdim=True))
    assert ConfidenceNet(nd, width=4, downsample=down)(s).shape == (2, 6, *spatial)
    assert SegmentationNet(nd, 3, width=4, downsample=down)(s).shape == (2, 1, *spatial)
    with pytest.raises(ValueError, match="expected input"):
        net(torch.randn(2, 2, *spatial))
    with pytest.raises(ValueError, match="ndim"):
        PolicyValueNet(4)


def test_harmful_flips_count_only_correct_to_wrong_changes():
    from clinloop.models.mecca.environment import count_harmful_flips

    p0 = torch.tensor([0.6, 0.6, 0.4, 0.4, 0.9, 0.02])
    p1 = torch.tensor([0.4, 0.7, 0.6, 0.3, 0.55, 0.04])
    y = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    # agent 0 (fg 0.6 -> 0.4) and agent 2 (bg 0.4 -> 0.6) turn wrong; agents 4 and 5 move
    # against their label but stay on the correct side: misunderstanding, not a flip
    assert count_harmful_flips(p0, p1, y) == 2
    assert count_misunderstanding(p0, p1, y) == 4
