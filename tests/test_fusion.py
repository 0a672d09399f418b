"""Label fusion: hand-computed cases, invalid raters, seeds, STAPLE."""
from math import comb

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from clinloop.data.fusion import (
    FUSIONS,
    fuse,
    majority_vote,
    random_subset_fusion,
    rater_variance,
    soft_label,
    spa_weighted_fusion,
    staple,
)

# three raters on a 2x3 image; column j counts: [3, 2, 1 | 0, 2, 1]
THREE = np.array(
    [
        [[1, 1, 1], [0, 1, 0]],
        [[1, 1, 0], [0, 1, 1]],
        [[1, 0, 0], [0, 0, 0]],
    ],
    dtype=bool,
)
# four raters, 1x5 image; votes per pixel: 4, 3, 2 (tie), 1, 0
FOUR = np.array([[[1, 1, 1, 1, 0]], [[1, 1, 1, 0, 0]], [[1, 1, 0, 0, 0]], [[1, 0, 0, 0, 0]]], dtype=bool)


def test_majority_three_raters_hand_computed():
    assert_array_equal(majority_vote(THREE), [[1, 1, 0], [0, 1, 0]])


def test_majority_four_raters_tie_is_background():
    assert_array_equal(majority_vote(FOUR), [[1, 1, 0, 0, 0]])  # 2 of 4 -> background


def test_majority_accepts_01_ints_and_rejects_other_values():
    assert_array_equal(majority_vote(THREE.astype(np.uint8)), majority_vote(THREE))
    with pytest.raises(ValueError, match="binary"):
        majority_vote(THREE.astype(np.uint8) * 2)
    with pytest.raises(ValueError, match="shape"):
        majority_vote(np.ones(5, bool))


def test_soft_label_and_variance_hand_computed():
    assert_allclose(soft_label(FOUR), [[1, 0.75, 0.5, 0.25, 0]])
    assert soft_label(FOUR).dtype == np.float32
    # population variance p(1-p)
    assert_allclose(rater_variance(FOUR), [[0, 0.1875, 0.25, 0.1875, 0]], atol=1e-7)
    assert_allclose(rater_variance(THREE), np.var(THREE.astype(float), axis=0), atol=1e-7)


def test_invalid_raters_are_ignored_not_counted_as_empty():
    # rater 3 of FOUR marked invalid: left with 3 raters, votes 3, 3, 2, 1, 0
    valid = np.array([True, True, True, False])
    assert_array_equal(majority_vote(FOUR, valid), [[1, 1, 1, 0, 0]])
    assert_allclose(soft_label(FOUR, valid), [[1, 1, 2 / 3, 1 / 3, 0]], atol=1e-6)
    # an invalid rater whose (garbage) mask is all ones changes nothing
    garbage = np.concatenate([THREE, np.ones((1, 2, 3), bool)])
    v = np.array([True, True, True, False])
    assert_array_equal(majority_vote(garbage, v), majority_vote(THREE))
    assert_allclose(rater_variance(garbage, v), rater_variance(THREE))
    _, a = spa_weighted_fusion(garbage, seed=1, rater_valid=v)
    assert a[3] == 0
    _, chosen = random_subset_fusion(garbage, seed=1, rater_valid=v, min_raters=3)
    assert_array_equal(chosen, [0, 1, 2])


def test_zero_valid_raters_raise():
    none = np.zeros(3, bool)
    for fn in (majority_vote, soft_label, rater_variance, staple):
        with pytest.raises(ValueError, match="zero valid raters"):
            fn(THREE, none)
    with pytest.raises(ValueError, match="rater_valid"):
        majority_vote(THREE, np.ones(2, bool))


def test_random_subset_reproducible_and_varied():
    rng = np.random.default_rng(3)
    masks = rng.random((6, 8, 8)) > 0.5
    a = [random_subset_fusion(masks, seed=s) for s in range(40)]
    b = [random_subset_fusion(masks, seed=s) for s in range(40)]
    for (fa, ca), (fb, cb) in zip(a, b):
        assert_array_equal(fa, fb)
        assert_array_equal(ca, cb)
        assert_array_equal(fa, majority_vote(masks[ca]))  # fused = MV of the chosen raters
        assert np.all(np.diff(ca) > 0) and ca.size >= 1
    assert len({tuple(c) for _, c in a}) > 10  # different seeds pick different subsets


def test_random_subset_is_uniform_over_subsets():
    # 3 raters: 7 non-empty subsets, each with probability 1/7; sizes 1,2,3 with 3/7,3/7,1/7
    masks = np.zeros((3, 2, 2), bool)
    sizes = np.array([random_subset_fusion(masks, seed=s)[1].size for s in range(2100)])
    freq = np.bincount(sizes, minlength=4)[1:] / sizes.size
    assert_allclose(freq, [comb(3, k) / 7 for k in (1, 2, 3)], atol=0.04)


def test_random_subset_options():
    masks = np.zeros((4, 3, 3), bool)
    masks[1, 1, 1] = masks[3, 0, 0] = True
    for s in range(20):
        fused, chosen = random_subset_fusion(masks, seed=s, require_nonempty=True)
        assert set(chosen) <= {1, 3}
        _, c2 = random_subset_fusion(masks, seed=s, n_raters=2)
        assert c2.size == 2
        _, c3 = random_subset_fusion(masks, seed=s, min_raters=3)
        assert c3.size >= 3
    # one rater chosen -> its own mask (the "preferred rater" user)
    fused, chosen = random_subset_fusion(masks, seed=0, n_raters=1)
    assert_array_equal(fused, masks[chosen[0]])
    # nothing non-empty: falls back to all valid raters
    _, chosen = random_subset_fusion(np.zeros((3, 2, 2), bool), seed=0, require_nonempty=True, min_raters=3)
    assert_array_equal(chosen, [0, 1, 2])
    with pytest.raises(ValueError, match="min_raters"):
        random_subset_fusion(masks, seed=0, min_raters=5)


def test_spa_weighted_hand_computed_and_reproducible():
    # with weights a the target is 1[sum a_r Y_r / sum a_r > 0.5]
    masks = FOUR
    for s in range(30):
        fused, a = spa_weighted_fusion(masks, seed=s)
        assert np.all((a >= 0) & (a <= 1)) and a.shape == (4,)
        expect = (a[:, None, None] * masks).sum(0) / a.sum() > 0.5
        assert_array_equal(fused, expect)
        f2, a2 = spa_weighted_fusion(masks, seed=s)
        assert_array_equal(a, a2)
        assert_array_equal(fused, f2)
        # unanimous pixels are never flipped by the weights
        assert fused[0, 0] and not fused[0, 4]
    weights = [tuple(spa_weighted_fusion(masks, seed=s)[1]) for s in range(30)]
    assert len(set(weights)) == 30
    outcomes = {tuple(spa_weighted_fusion(masks, seed=s)[0].ravel()) for s in range(30)}
    assert len(outcomes) > 1  # the ambiguous pixels do change with the seed
    # a generator works as a seed too
    g = np.random.default_rng(5)
    assert_array_equal(spa_weighted_fusion(masks, seed=g)[1], spa_weighted_fusion(masks, seed=5)[1])


def _square(n, lo, hi):
    m = np.zeros((n, n), bool)
    m[lo:hi, lo:hi] = True
    return m


def test_staple_identical_raters_returns_that_mask():
    t = _square(24, 6, 18)
    for masks in (np.stack([t, t, t]), np.stack([t, t, t]).astype(np.uint8)[:, None].repeat(4, 1)):
        mask, prob = staple(masks)
        assert_array_equal(mask, masks[0].astype(bool))
        assert_allclose(prob, masks[0], atol=1e-6)
    mask, prob = staple(np.zeros((3, 8, 8), bool))  # ITK gives NaN here; we give empty
    assert not mask.any() and np.isfinite(prob).all()


def test_staple_downweights_an_outlier_rater():
    t = _square(32, 8, 24)
    r2 = t.copy(); r2[8, 8:24] = False
    r3 = t.copy(); r3[8:24, 23] = False
    outlier = _square(32, 0, 30)  # marks 3.5x the area
    masks = np.stack([t, r2, r3, outlier])
    mask, prob, sens, spec = staple(masks, return_performance=True)
    assert_array_equal(mask, t)
    assert prob.dtype == np.float32 and prob.min() >= 0 and prob.max() <= 1
    # the outlier gets by far the lowest specificity; the others are near 1
    assert spec[3] < 0.3 and np.all(spec[:3] > 0.99)
    assert np.all(sens > 0.9)
    # as an invalid rater it is simply dropped
    mask_v, _, sens_v, _ = staple(masks, rater_valid=[True, True, True, False], return_performance=True)
    assert_array_equal(mask_v, t)
    assert np.isnan(sens_v[3])


def test_staple_3d():
    t = np.zeros((6, 10, 10), bool)
    t[1:5, 2:8, 2:8] = True
    noisy = t.copy(); noisy[1] = False
    mask, prob = staple(np.stack([t, t, noisy]))
    assert mask.shape == t.shape
    assert_array_equal(mask, t)


def test_fusions_registry_and_fuse():
    assert set(FUSIONS) == {"majority", "soft", "random-subset", "spa-weighted", "staple"}
    assert_array_equal(fuse("majority", THREE), majority_vote(THREE))
    assert fuse("soft", THREE).dtype == np.float32
    assert_array_equal(fuse("random-subset", THREE, seed=4), random_subset_fusion(THREE, seed=4)[0])
    assert_array_equal(fuse("spa-weighted", THREE, seed=4), spa_weighted_fusion(THREE, seed=4)[0])
    assert fuse("staple", THREE).shape == (2, 3)
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse("mean", THREE)


# ---------------------------------------------------------------- numpy fusion == LEXU's batched torch fusion
@pytest.mark.parametrize("seed", range(5))
def test_torch_fusions_equal_numpy_per_image(seed):
    """clinloop.models.lexu.losses holds the batched torch twins of soft_label,
    rater_variance and majority_vote: equal to the numpy ones image by image,
    with invalid raters (padding) left out, and ties (even rater counts) as background."""
    torch = pytest.importorskip("torch")
    from clinloop.models.lexu import losses

    rng = np.random.default_rng(seed)
    b, r = 6, 4
    m = rng.integers(0, 2, (b, r, 5, 7)).astype(np.uint8)
    valid = rng.random((b, r)) < 0.7
    valid[np.arange(b), rng.integers(0, r, b)] = True  # >= 1 valid rater per image
    tm, tv = torch.from_numpy(m), torch.from_numpy(valid)
    S, H, MV = losses.soft_label(tm, tv).numpy(), losses.rater_variance(tm, tv).numpy(), losses.majority_vote(tm, tv).numpy()
    for i in range(b):
        assert_allclose(S[i], soft_label(m[i], valid[i]), atol=1e-6)
        assert_allclose(H[i], rater_variance(m[i], valid[i]), atol=1e-6)
        assert_array_equal(MV[i] > 0, majority_vote(m[i], valid[i]))


def test_zero_valid_raters_raise_in_numpy_and_torch():
    """The one defined behaviour without a valid rater: ValueError, never an all-zero target."""
    torch = pytest.importorskip("torch")
    from clinloop.models.lexu import losses

    m = np.ones((2, 3, 3), np.uint8)
    none = np.zeros(2, bool)
    for fn in (soft_label, rater_variance, majority_vote):
        with pytest.raises(ValueError, match="zero valid raters"):
            fn(m, none)
    tm = torch.from_numpy(np.stack([m, m]))
    tv = torch.tensor([[True, False], [False, False]])
    for fn in (losses.soft_label, losses.rater_variance, losses.majority_vote):
        with pytest.raises(ValueError, match=r"zero valid raters for image\(s\) \[1\]"):
            fn(tm, tv)
