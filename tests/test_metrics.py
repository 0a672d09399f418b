"""clinloop.metrics: hand-computed tables, edge cases, and independent libraries."""
from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from clinloop import metrics as M

SQ2 = math.sqrt(2.0)


def _blobs(rng: np.random.Generator, shape: tuple[int, ...], level: float = 0.0) -> np.ndarray:
    """A smooth random binary mask (several blobs, irregular surfaces)."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(rng.standard_normal(shape), sigma=2.0) > level


# ------------------------------------------------------------------ overlap
# (pred, target, dice, iou)
OVERLAP_CASES = [
    # inter 1, |P| 2, |T| 2: Dice 2/4, IoU 1/3
    ([[1, 1], [0, 0]], [[1, 0], [1, 0]], 0.5, 1 / 3),
    # inter 2, |P| 3, |T| 2: Dice 4/5, IoU 2/3
    ([[1, 1], [1, 0]], [[1, 1], [0, 0]], 0.8, 2 / 3),
    # disjoint
    ([[1, 0], [0, 0]], [[0, 0], [0, 1]], 0.0, 0.0),
    # both empty -> perfect agreement (documented)
    ([[0, 0], [0, 0]], [[0, 0], [0, 0]], 1.0, 1.0),
    # one empty
    ([[0, 0], [0, 0]], [[0, 1], [0, 0]], 0.0, 0.0),
    # 3x3 floats 0/1: P = top row + centre (4), T = top row (3): inter 3, Dice 6/7, IoU 3/4
    ([[1.0, 1, 1], [0, 1, 0], [0, 0, 0]], [[1, 1, 1], [0, 0, 0], [0, 0, 0]], 6 / 7, 0.75),
    # 3-D 2x2x2 bool: P = first slab (4), T = its first row (2): inter 2, Dice 4/6, IoU 2/4
    (np.arange(8).reshape(2, 2, 2) < 4, np.isin(np.arange(8), (0, 1)).reshape(2, 2, 2), 2 / 3, 0.5),
]


@pytest.mark.parametrize("pred, target, d, j", OVERLAP_CASES)
def test_dice_iou_table(pred, target, d, j):
    assert M.dice(pred, target) == pytest.approx(d)
    assert M.iou(pred, target) == pytest.approx(j)
    assert isinstance(M.dice(pred, target), float)


def test_dice_iou_relation_and_medpy_on_random_masks():
    medpy_bin = pytest.importorskip("medpy.metric.binary")
    rng = np.random.default_rng(0)
    for shape in [(32, 32), (10, 12, 14)]:
        for _ in range(4):
            p, t = _blobs(rng, shape), _blobs(rng, shape)
            d, j = M.dice(p, t), M.iou(p, t)
            assert d == pytest.approx(medpy_bin.dc(p, t), abs=1e-12)
            assert j == pytest.approx(medpy_bin.jc(p, t), abs=1e-12)
            assert d == pytest.approx(2 * j / (1 + j), abs=1e-12)  # Dice = 2J/(1+J)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI deprecation noise
def test_dice_and_assd_match_monai():
    torch = pytest.importorskip("torch")
    monai_metrics = pytest.importorskip("monai.metrics")
    rng = np.random.default_rng(1)

    def t5(a):  # (B=1, C=1, *spatial) float tensor, as MONAI wants
        return torch.from_numpy(np.asarray(a))[None, None].float()

    cases = [(_blobs(rng, (20, 20)), _blobs(rng, (20, 20))) for _ in range(2)]
    cases += [(np.zeros((5, 5), bool), np.zeros((5, 5), bool)),
              (np.eye(5, dtype=bool), np.zeros((5, 5), bool))]
    for p, t in cases:  # ignore_empty=False: empty target scores 1 iff pred is empty too
        ref = monai_metrics.compute_dice(t5(p), t5(t), include_background=True, ignore_empty=False)
        assert M.dice(p, t) == pytest.approx(float(ref), abs=1e-6)
    # MONAI's symmetric ASD pools both directions, like medpy >= 0.5 (float32 inside)
    for shape, spacing in [((24, 24), (0.5, 2.0)), ((8, 12, 12), (2.5, 1.0, 1.0))]:
        p, t = _blobs(rng, shape, 0.1), _blobs(rng, shape, 0.1)
        ref = monai_metrics.compute_average_surface_distance(
            t5(p), t5(t), include_background=True, symmetric=True, spacing=list(spacing))
        assert M.assd(p, t, spacing, pooled=True) == pytest.approx(float(ref), rel=1e-5)


def test_torch_tensors_accepted():
    torch = pytest.importorskip("torch")
    p = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    t = torch.tensor([[1.0, 1.0], [0.0, 0.0]], requires_grad=True)
    assert M.dice(p, t) == pytest.approx(0.8)
    assert M.soft_dice(torch.tensor([1.0, 0.5]), torch.tensor([1.0, 0.0])) == pytest.approx(0.8)


# (prob, soft_target, expected)
SOFT_DICE_CASES = [
    ([0.5, 0.5], [1, 0], 0.5),            # 2*0.5 / (1 + 1)
    ([1.0, 0.5], [1, 0], 0.8),            # 2*1 / (1.5 + 1)
    ([0.2, 0.8], [0.5, 0.5], 0.5),        # 2*(0.1+0.4) / (1 + 1)
    ([[0.0, 0.0]], [[0.0, 0.0]], 1.0),    # both all-zero
    ([0.0, 0.0], [0.3, 0.0], 0.0),
]


@pytest.mark.parametrize("p, t, expected", SOFT_DICE_CASES)
def test_soft_dice_table(p, t, expected):
    assert M.soft_dice(p, t) == pytest.approx(expected)


def test_soft_dice_equals_dice_on_binary():
    rng = np.random.default_rng(2)
    p, t = _blobs(rng, (16, 16)), _blobs(rng, (16, 16))
    assert M.soft_dice(p.astype(float), t.astype(float)) == pytest.approx(M.dice(p, t))


def test_dice_over_thresholds_binary_target():
    prob = [0.2, 0.4, 0.6, 0.8]
    target = [0, 1, 1, 1]
    # tau 0.1: P = all 4, T 3 -> 6/7 | 0.3: P = T -> 1 | 0.5: P 2 inside T -> 4/5
    # 0.7: P 1 inside T -> 2/4 | 0.9: P empty, T 3 -> 0
    expected = (6 / 7 + 1 + 0.8 + 0.5 + 0) / 5
    assert M.dice_over_thresholds(prob, target) == pytest.approx(expected)
    assert M.dice_over_thresholds(prob, target, thresholds=[0.5]) == pytest.approx(0.8)


def test_dice_over_thresholds_soft_target_thresholded_at_same_tau():
    prob = [0.2, 0.4, 0.6, 0.8]
    soft = [0.0, 0.5, 0.5, 1.0]
    # tau 0.1: P 4, T {1,2,3} -> 6/7 | 0.3: P {1,2,3} = T -> 1
    # 0.5: P {2,3}, T {3} (0.5 is not > 0.5) -> 2/3 | 0.7: P {3} = T {3} -> 1
    # 0.9: P empty, T {3} -> 0
    expected = (6 / 7 + 1 + 2 / 3 + 1 + 0) / 5
    assert M.dice_over_thresholds(prob, soft) == pytest.approx(expected)
    # a perfect soft prediction scores 1 at every threshold
    assert M.dice_over_thresholds(soft, soft) == pytest.approx(1.0)


# --------------------------------------------------------------------- GED
def _ged_bruteforce(s, y, exclude):
    def d(a, b):
        u = np.logical_or(a, b).sum()
        return 0.0 if u == 0 else 1.0 - np.logical_and(a, b).sum() / u

    def within(x):
        pairs = [(i, j) for i in range(len(x)) for j in range(len(x)) if not (exclude and i == j)]
        return np.mean([d(x[i], x[j]) for i, j in pairs]) if pairs else 0.0

    cross = np.mean([d(a, b) for a in s for b in y])
    return 2 * cross - within(s) - within(y)


def test_ged_hand_cases():
    s = np.array([[1, 0], [0, 1]], bool)  # two samples
    y = np.array([[1, 0]], bool)          # one rater
    # d(s1,y)=0, d(s2,y)=1 -> cross 0.5; within S with diagonal: [[0,1],[1,0]] -> 0.5;
    # within Y = 0  =>  2*0.5 - 0.5 - 0 = 0.5
    assert M.ged(s, y) == pytest.approx(0.5)
    # excluding i == j: within S = 1, a single rater contributes 0 => 1 - 1 - 0 = 0
    assert M.ged(s, y, exclude_identical=True) == pytest.approx(0.0)
    # empty vs empty is distance 0; empty vs non-empty is 1 => 2*1 - 0 - 0 = 2
    assert M.ged(np.zeros((1, 2, 2)), np.zeros((1, 2, 2))) == 0.0
    assert M.ged(np.zeros((1, 2, 2)), np.ones((1, 2, 2))) == pytest.approx(2.0)


def test_ged_identical_sets():
    rng = np.random.default_rng(3)
    x = np.stack([_blobs(rng, (16, 16)) for _ in range(3)])
    # with identical indices included, a distribution has zero distance to itself
    assert M.ged(x, x) == pytest.approx(0.0, abs=1e-12)
    # excluding them: cross = mean over all n^2 pairs = (n-1)/n * off, within = off each,
    # so GED(X, X) = 2 (n-1)/n off - 2 off = -2 off / n  (off = mean off-diagonal 1 - IoU)
    off = np.mean([1 - M.iou(x[i], x[j]) for i in range(3) for j in range(3) if i != j])
    assert M.ged(x, x, exclude_identical=True) == pytest.approx(-2 * off / 3, abs=1e-12)


@pytest.mark.parametrize("exclude", [False, True])
def test_ged_matches_bruteforce_on_random_masks(exclude):
    rng = np.random.default_rng(4)
    s = np.stack([_blobs(rng, (12, 12)) for _ in range(5)] + [np.zeros((12, 12), bool)])
    y = np.stack([_blobs(rng, (12, 12)) for _ in range(3)] + [np.zeros((12, 12), bool)])
    assert M.ged(s, y, exclude) == pytest.approx(_ged_bruteforce(s, y, exclude), abs=1e-12)
    # 3-D samples
    s3 = np.stack([_blobs(rng, (6, 8, 8)) for _ in range(4)])
    y3 = np.stack([_blobs(rng, (6, 8, 8)) for _ in range(2)])
    assert M.ged(s3, y3, exclude) == pytest.approx(_ged_bruteforce(s3, y3, exclude), abs=1e-12)


# -------------------------------------------------- pairwise Dice, variance
def test_pairwise_dice():
    m = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    # (0,1): 2*1/3 | (0,2): 0 | (1,2): 0  => mean 2/9
    assert M.pairwise_dice(m) == pytest.approx(2 / 9)
    assert M.pairwise_dice(np.zeros((2, 3, 3))) == 1.0  # two empty raters agree
    assert math.isnan(M.pairwise_dice(np.ones((1, 4))))
    rng = np.random.default_rng(5)
    r = np.stack([_blobs(rng, (16, 16)) for _ in range(4)])
    loop = np.mean([M.dice(r[i], r[j]) for i in range(4) for j in range(i + 1, 4)])
    assert M.pairwise_dice(r) == pytest.approx(loop, abs=1e-12)


def test_variance_map():
    m = np.array([[[1, 0]], [[1, 1]], [[0, 1]]], bool)  # (3, 1, 2)
    # each pixel is Bernoulli with p = 2/3 -> p(1-p) = 2/9
    v = M.variance_map(m)
    assert v.shape == (1, 2)
    assert_allclose(v, [[2 / 9, 2 / 9]])
    probs = np.random.default_rng(6).random((5, 4, 3, 2))
    assert_allclose(M.variance_map(probs), probs.var(axis=0))


# ------------------------------------------------------------- correlations
NCC_CASES = [
    ([1, 2, 3], [2, 4, 6], 1.0),
    ([1, 2, 3], [3, 2, 1], -1.0),
    # centred: a=[-1.5,-.5,.5,1.5], b=[-1.5,.5,-.5,1.5]; mean product 1, var 1.25 each -> 0.8
    ([1, 2, 3, 4], [1, 3, 2, 4], 0.8),
    ([[1, 1], [1, 1]], [[0, 1], [2, 3]], 0.0),  # constant map
]


@pytest.mark.parametrize("a, b, expected", NCC_CASES)
def test_ncc_table(a, b, expected):
    assert M.ncc(a, b) == pytest.approx(expected)


def test_ncc_equals_pearson_on_maps():
    rng = np.random.default_rng(7)
    a = rng.random((8, 9))
    b = a + 0.5 * rng.random((8, 9))
    assert M.ncc(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1], abs=1e-12)


def test_spearman_hand_and_scipy():
    # same ranks as the NCC case: 1 - 6*sum d^2 / (n(n^2-1)) = 1 - 6*2/60 = 0.8
    assert M.spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    assert M.spearman([1, 2, 3], [1, 8, 27]) == pytest.approx(1.0)  # monotone
    assert math.isnan(M.spearman([1, 1, 1], [1, 2, 3]))              # constant -> nan
    assert math.isnan(M.spearman([1.0], [2.0]))
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(8)
    x = rng.integers(0, 6, 40).astype(float)  # many ties
    y = x + rng.integers(0, 4, 40)
    assert M.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert isinstance(M.spearman(x, y), float)


def test_distance_correlation_hand_case():
    # x=[1,2,3], y=[1,3,2]: double-centred A = [[-10,2,8],[2,-4,2],[8,2,-10]]/9,
    # B = [[-10,8,2],[8,-10,2],[2,2,-4]]/9; sum(A*B)=252/81, sum(A*A)=sum(B*B)=360/81
    # => dCor^2 = 252/360 = 0.7
    assert M.distance_correlation([1, 2, 3], [1, 3, 2]) == pytest.approx(math.sqrt(0.7))
    assert M.distance_correlation([1, 2, 3], [5, 7, 9]) == pytest.approx(1.0)
    assert M.distance_correlation([2, 2, 2], [1, 2, 3]) == 0.0


_DCOR_SCRIPT = """
import json, sys
import numpy as np
import numba
# dcor builds row-wise gufuncs at import even with NUMBA_DISABLE_JIT; distance_correlation
# never uses them, so a pass-through decorator keeps the import to about a second
numba.guvectorize = lambda *args, **kwargs: (lambda f: f)
import dcor
pairs = json.load(sys.stdin)
print(json.dumps([dcor.distance_correlation(np.array(x), np.array(y)) for x, y in pairs]))
"""


def test_distance_correlation_matches_dcor():
    """dcor's numba kernels compile eagerly at import (~20 s), so the reference runs in
    a subprocess with NUMBA_DISABLE_JIT=1: dcor's own code, run as plain Python."""
    import json
    import os
    import subprocess
    import sys

    import importlib.util

    if importlib.util.find_spec("dcor") is None:  # find, don't import (the import is the slow part)
        pytest.skip("dcor is not installed")
    rng = np.random.default_rng(9)
    pairs = []
    for n in (5, 30, 80):
        x = rng.standard_normal(n)
        pairs.append((x, x ** 2 + 0.3 * rng.standard_normal(n)))  # nonlinear dependence
    pairs.append((rng.integers(0, 3, 20).astype(float), rng.integers(0, 3, 20).astype(float)))
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _DCOR_SCRIPT], env=env, check=True, timeout=120,
                         input=json.dumps([(x.tolist(), y.tolist()) for x, y in pairs]),
                         capture_output=True, text=True).stdout
    for (x, y), ref in zip(pairs, json.loads(out)):
        assert M.distance_correlation(x, y) == pytest.approx(ref, abs=1e-10)


# -------------------------------------------------------------- calibration
def test_nll_hand_cases():
    # -(ln 0.8 + ln 0.6) / 2
    assert M.nll([0.8, 0.4], [1, 0]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert M.nll([0.5], [0.5]) == pytest.approx(math.log(2))          # soft target
    assert M.nll([0.0], [1.0]) == pytest.approx(-math.log(1e-7))      # clipped, finite
    assert M.nll([0.0, 1.0], [0, 1]) == pytest.approx(-math.log(1 - 1e-7))
    assert M.nll([0.0], [1.0], eps=1e-3) == pytest.approx(-math.log(1e-3))


def test_nll_matches_torch_bce():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    p, t = rng.uniform(0.01, 0.99, (6, 7)), rng.random((6, 7))
    ref = torch.nn.functional.binary_cross_entropy(torch.from_numpy(p), torch.from_numpy(t))
    assert M.nll(p, t) == pytest.approx(float(ref), abs=1e-10)


def test_ece_hand_cases():
    p = [0.05, 0.15, 0.15, 0.95]
    t = [0, 1, 0, 1]
    # bin0: |0 - .05| * 1 ; bin1: |.5 - .15| * 2 ; bin9: |1 - .95| * 1  -> 0.8 / 4
    assert M.ece(p, t) == pytest.approx(0.2)
    assert M.ece([1.0, 0.0], [1, 0]) == pytest.approx(0.0)            # p = 1 lands in the last bin
    # perfectly calibrated: 10 pixels at p=0.3, 3 of them positive
    assert M.ece(np.full(10, 0.3), [1, 1, 1] + [0] * 7) == pytest.approx(0.0)
    # one bin: |mean t - mean p|
    assert M.ece([0.2, 0.9], [0, 0], n_bins=1) == pytest.approx(0.55)


def test_ece_matches_loop_reference():
    rng = np.random.default_rng(11)
    p = rng.random(500)
    t = rng.random(500) < p ** 2
    edges = np.linspace(0, 1, 8)
    ref = 0.0
    for b in range(7):
        inb = (p >= edges[b]) & ((p < edges[b + 1]) if b < 6 else (p <= 1))
        if inb.any():
            ref += inb.mean() * abs(t[inb].mean() - p[inb].mean())
    assert M.ece(p, t, n_bins=7) == pytest.approx(ref, abs=1e-12)


# --------------------------------------------------------- surface distances
def test_surface_distance_hand_cases():
    a = np.zeros((3, 3), bool); a[0, 0] = True
    b = np.zeros((3, 3), bool); b[0, 2] = True
    assert M.assd(a, b) == pytest.approx(2.0)
    assert M.hd95(a, b) == pytest.approx(2.0)
    assert M.assd(a, b, spacing=(3.0, 0.5)) == pytest.approx(1.0)  # 2 columns x 0.5 mm

    sq = np.zeros((5, 5), bool); sq[1:4, 1:4] = True
    c = np.zeros((5, 5), bool); c[2, 2] = True
    # square surface = 8 ring pixels (centre eroded away): 4 at distance 1, 4 at sqrt2
    # from the centre; the centre's distance to the ring is 1. Mean of the two
    # directed means: ((4*1 + 4*sqrt2)/8 + 1/1) / 2 = 1.1036; pooled over all 9: 1.1841
    assert M.assd(sq, c) == pytest.approx(((1 + SQ2) / 2 + 1) / 2)
    assert M.assd(sq, c, pooled=True) == pytest.approx((4 * 1 + 4 * SQ2 + 1) / 9)
    # all 9 distances {1 x5, sqrt2 x4}: 95th percentile index 7.6 -> sqrt2
    assert M.hd95(sq, c) == pytest.approx(SQ2)

    # 3-D, anisotropic: voxels (0,0,0) and (1,2,0) with spacing (2,1,1) -> sqrt(4+4)
    u = np.zeros((2, 3, 2), bool); u[0, 0, 0] = True
    v = np.zeros((2, 3, 2), bool); v[1, 2, 0] = True
    assert M.assd(u, v, spacing=(2, 1, 1)) == pytest.approx(2 * SQ2)
    assert M.hd95(u, v, spacing=[2, 1, 1]) == pytest.approx(2 * SQ2)

    full = np.ones((2, 2), bool)  # touches the border: every pixel is surface
    assert M.assd(full, full) == 0.0


def test_surface_distance_empty_masks():
    z, o = np.zeros((4, 4), bool), np.eye(4, dtype=bool)
    assert M.assd(z, z) == 0.0 and M.hd95(z, z) == 0.0
    assert M.assd(z, o) == math.inf and M.hd95(o, z) == math.inf


@pytest.mark.parametrize("shape, spacing", [
    ((40, 36), None), ((40, 36), (0.7, 1.9)), ((14, 18, 16), (2.5, 0.8, 0.8)), ((14, 18, 16), None),
])
def test_surface_distances_match_medpy(shape, spacing):
    medpy_bin = pytest.importorskip("medpy.metric.binary")
    rng = np.random.default_rng(12)
    for _ in range(3):
        p, t = _blobs(rng, shape, 0.1), _blobs(rng, shape, 0.1)
        directed = (medpy_bin.asd(p, t, voxelspacing=spacing) + medpy_bin.asd(t, p, voxelspacing=spacing)) / 2
        assert M.assd(p, t, spacing) == pytest.approx(directed, abs=1e-10)
        assert M.assd(p, t, spacing, pooled=True) == pytest.approx(medpy_bin.assd(p, t, voxelspacing=spacing), abs=1e-10)
        assert M.hd95(p, t, spacing) == pytest.approx(medpy_bin.hd95(p, t, voxelspacing=spacing), abs=1e-10)


# -------------------------------------------------------------- interaction
@pytest.mark.parametrize("dices, thr, kwargs, expected", [
    ([0.5, 0.7, 0.86, 0.9], 0.85, {}, 3),
    ([0.5, 0.7, 0.86, 0.9], 0.5, {}, 1),         # >= is inclusive
    ([0.5, 0.7, 0.86, 0.9], 0.95, {}, 10),       # never reached
    ([0.1] * 6 + [0.99], 0.9, {}, 10),           # reached only at iteration 7 > max 6
    ([0.1] * 6 + [0.99], 0.9, {"max_iterations": 7}, 7),
    ([0.1, 0.2], 0.9, {"fail_value": 20}, 20),
    ([], 0.9, {}, 10),
])
def test_noc(dices, thr, kwargs, expected):
    assert M.noc(dices, thr, **kwargs) == expected


# ------------------------------------------------------------- validation
def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(2, 3\)"):
        M.dice(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\(4,\).*\(5,\)"):
        M.nll(np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError, match="shape"):
        M.ged(np.zeros((2, 3, 3)), np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="shape"):
        M.spearman([1, 2, 3], [1, 2])


@pytest.mark.parametrize("fn", [M.dice, M.iou, M.assd, M.hd95])
def test_non_binary_rejected(fn):
    with pytest.raises(ValueError, match="binary"):
        fn(np.array([[0, 2], [1, 0]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="binary"):
        fn(np.zeros((2, 2)), np.array([[0.5, 0], [0, 0]]))


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="binary"):
        M.ged(np.full((1, 2), 0.5), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="spacing"):
        M.assd(np.eye(3), np.eye(3), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        M.hd95(np.eye(3), np.eye(3), spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.soft_dice([1.2, 0], [1, 0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.nll([0.5, float("nan")], [1, 0])
    with pytest.raises(ValueError, match="1-D"):
        M.distance_correlation(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="n_bins"):
        M.ece([0.5], [1], n_bins=0)
