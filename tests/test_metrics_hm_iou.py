"""``clinloop.metrics.hm_iou``: a hand-computed case, the empty-mask convention, the
replication to lcm(N, M), and agreement with an independent reference (explicitly
replicated mask sets, pairwise ``iou``, ``scipy.optimize.linear_sum_assignment``; and
brute force over all matchings where that is small)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from clinloop.metrics import hm_iou, iou


def _m(*rows):
    return np.array(rows, dtype=bool).reshape(len(rows), 2, 2)


def test_hand_computed_two_by_two():
    raters = _m([1, 1, 0, 0], [0, 0, 1, 1])
    samples = _m([1, 0, 0, 0], [0, 0, 1, 1])
    # IoU(S1,R1) = 1/2, IoU(S2,R2) = 1, the crossed pairs 0 -> best matching mean 0.75
    assert hm_iou(samples, raters) == pytest.approx(0.75)
    # order of either set does not matter
    assert hm_iou(samples[::-1], raters) == pytest.approx(0.75)


def test_single_sample_is_replicated_against_four_raters_with_empty_ones():
    sample = _m([1, 1, 0, 0])
    raters = _m([1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0])
    # L = lcm(1, 4) = 4: the sample meets every rater once: IoU 1, 1/2, 0, 0
    assert hm_iou(sample, raters) == pytest.approx(0.375)


def test_two_empty_masks_count_one():
    samples = _m([0, 0, 0, 0], [0, 0, 0, 0])
    raters = _m([0, 0, 0, 0], [0, 1, 0, 0])
    assert hm_iou(samples, raters) == pytest.approx(0.5)
    assert hm_iou(samples[:1], raters[:1]) == 1.0


def test_thirty_two_samples_four_raters_equals_eightfold_rater_replication():
    rng = np.random.default_rng(3)
    raters = rng.random((4, 6, 6)) < 0.4
    samples = rng.random((32, 6, 6)) < 0.4
    rep = np.repeat(raters, 8, axis=0)
    sim = np.array([[iou(s, r) for r in rep] for s in samples])
    r, c = linear_sum_assignment(-sim)
    assert hm_iou(samples, raters) == pytest.approx(sim[r, c].mean(), abs=1e-12)


def _reference(samples, raters):
    """Independent: replicate the masks themselves, IoU pair by pair, scipy's assignment."""
    n, m = len(samples), len(raters)
    size = math.lcm(n, m)
    a, b = np.repeat(samples, size // n, axis=0), np.repeat(raters, size // m, axis=0)
    sim = np.array([[iou(x, y) for y in b] for x in a])
    r, c = linear_sum_assignment(-sim)
    return float(sim[r, c].mean()), sim


@pytest.mark.parametrize("n,m", [(2, 3), (3, 4), (5, 4), (4, 4), (1, 3), (6, 4), (16, 4)])
def test_matches_scipy_reference_on_random_masks(n, m):
    rng = np.random.default_rng(10 * n + m)
    samples = rng.random((n, 5, 7)) < rng.uniform(0.05, 0.6)
    raters = rng.random((m, 5, 7)) < rng.uniform(0.05, 0.6)
    samples[0] = False  # include empty masks on both sides
    raters[-1] = False
    ref, sim = _reference(samples, raters)
    got = hm_iou(samples, raters)
    assert got == pytest.approx(ref, abs=1e-12)
    if len(sim) <= 6:  # brute force over every matching: no scipy involved
        best = max(np.mean([sim[i, p[i]] for i in range(len(sim))]) for p in itertools.permutations(range(len(sim))))
        assert got == pytest.approx(best, abs=1e-12)
    # never below the mean IoU of the identity matching
    assert got >= np.mean(np.diag(sim)) - 1e-12


def test_bad_input_is_a_clear_value_error():
    with pytest.raises(ValueError, match="shape"):
        hm_iou(np.zeros((2, 4, 4), bool), np.zeros((2, 5, 4), bool))
    with pytest.raises(ValueError, match="K >= 1"):
        hm_iou(np.zeros((0, 4, 4), bool), np.zeros((2, 4, 4), bool))
    with pytest.raises(ValueError, match="binary"):
        hm_iou(np.full((2, 4, 4), 0.5), np.zeros((2, 4, 4), bool))
    with pytest.raises(ValueError, match="lcm"):
        hm_iou(np.zeros((101, 2, 2), bool), np.zeros((103, 2, 2), bool))
