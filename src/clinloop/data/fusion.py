"""Label fusion: turning R rater masks into one training or evaluation target.

Every function here is pure and takes

* ``masks``: ``(R, *spatial)`` bool (or 0/1 integers), one mask per rater, in
  the axis order of :class:`~clinloop.data.sample.MultiRaterSample`;
* ``rater_valid``: optional ``(R,)`` bool. A rater with ``False`` is *missing*
  (e.g. an unrecoverable RIGA outline) and is left out entirely: it is never
  counted as an empty mask. ``None`` means every rater is valid.

Random fusions take ``seed`` (an ``int``, ``None`` or a ready
``np.random.Generator``; it goes through :func:`numpy.random.default_rng`), so
the same seed gives the same target.

Which paper uses which:

* :func:`majority_vote` - ``1[mean > 0.5]``: SPA's ``y_app`` aggregation
  (spa.txt section 3.3), MedUHIP's ``P_soft`` (meduhip.txt eq. 2) and the
  "majority vote labels" both papers train deterministic baselines with.
* :func:`soft_label` - LEXU's soft majority voting label ``S(M)`` (lexu.txt,
  MRO) and the ground truth of its soft-Dice evaluation.
* :func:`rater_variance` - LEXU's ground-truth variance heatmap ``H`` (DGM).
* :func:`random_subset_fusion` - MedUHIP's test ground truth ("a random set of
  annotations were selected, fused, and binarised") and the simulated
  "preferred-rater" user.
* :func:`spa_weighted_fusion` - SPA's stochastic training target
  ``y = 1_0.5(sum A x Y)`` (spa.txt section 3.5).
* :func:`staple` - STAPLE (Warfield et al. 2004) through SimpleITK, a common
  reference consensus; not used by the four papers.

No valid rater (every ``rater_valid`` False) is a ``ValueError`` in every
function here: there is no target, and an all-zero label would silently teach
"background". LEXU's training loss needs the same fusions batched on torch
tensors: :mod:`clinloop.models.lexu.losses` holds ``soft_label``,
``rater_variance`` and ``majority_vote`` twins with the same rule (tested equal,
image by image, in ``tests/test_fusion.py``).

:data:`FUSIONS` maps the names used on the command line and in configs to the
functions; :func:`fuse` calls any of them with one signature and returns just
the fused label.
"""
from __future__ import annotations

from math import comb
from typing import Callable

import numpy as np

__all__ = [
    "majority_vote",
    "soft_label",
    "rater_variance",
    "random_subset_fusion",
    "spa_weighted_fusion",
    "staple",
    "fuse",
    "FUSIONS",
]


def _check(masks, rater_valid, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return ``(masks (R,*spatial) bool, valid (R,) bool)``.

    Raises ``ValueError`` on non-binary values, a missing spatial axis, a
    ``rater_valid`` of the wrong length, or zero valid raters.
    """
    m = np.asarray(masks)
    if m.ndim < 2:
        raise ValueError(f"{where}: masks must be (R, *spatial), got shape {m.shape}")
    if m.dtype != bool:
        if m.size and not np.isin(m, (0, 1)).all():
            bad = np.unique(m[~np.isin(m, (0, 1))])[:5]
            raise ValueError(f"{where}: masks must be binary (0/1), found values {bad.tolist()}")
        m = m.astype(bool)
    r = m.shape[0]
    if rater_valid is None:
        valid = np.ones(r, dtype=bool)
    else:
        valid = np.asarray(rater_valid, dtype=bool)
        if valid.shape != (r,):
            raise ValueError(f"{where}: rater_valid has shape {valid.shape}, expected ({r},) for masks {m.shape}")
    if not valid.any():
        raise ValueError(f"{where}: zero valid raters (masks {m.shape}, rater_valid {valid.tolist()})")
    return m, valid


def majority_vote(masks, rater_valid=None) -> np.ndarray:
    """Strict majority of the valid raters, ``(*spatial)`` bool.

    A pixel is foreground when **more than half** of the ``R_v`` valid raters
    mark it: ``1[(1/R_v) sum_r Y_r > 0.5]``. Ties (even ``R_v`` with exactly
    half the raters) go to **background**, matching SPA's ``1_0.5(mean)`` and
    MedUHIP's ``I(mean > 1/2)`` (eq. 2). Raises ``ValueError`` on zero valid
    raters.
    """
    m, valid = _check(masks, rater_valid, "majority_vote")
    votes = m[valid].sum(axis=0, dtype=np.int64)
    return 2 * votes > int(valid.sum())  # integer test: no float rounding at the tie


def soft_label(masks, rater_valid=None) -> np.ndarray:
    """Rater mean ``(1/R_v) sum_r Y_r``, ``(*spatial)`` float32 in [0, 1].

    LEXU's soft majority voting label ``S(M)``.
    """
    m, valid = _check(masks, rater_valid, "soft_label")
    return m[valid].mean(axis=0, dtype=np.float64).astype(np.float32)


def rater_variance(masks, rater_valid=None) -> np.ndarray:
    """Pixel-wise population variance across valid raters, ``(*spatial)`` float32.

    LEXU's ground-truth variance heatmap ``H`` ("pixelwise variance along the
    channel axis"); population (``ddof=0``) variance, so for binary masks it is
    ``p (1 - p)`` with ``p`` the soft label, at most 0.25.
    """
    m, valid = _check(masks, rater_valid, "rater_variance")
    return m[valid].astype(np.float64).var(axis=0).astype(np.float32)


def random_subset_fusion(
    masks,
    seed=None,
    rater_valid=None,
    min_raters: int = 1,
    require_nonempty: bool = False,
    n_raters: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Majority vote (:func:`majority_vote`) of a random subset of raters.

    MedUHIP's evaluation ground truth ("a random set of annotations were
    selected, fused, and binarised", meduhip.txt section 4) and the
    "preferred-rater" simulated user (a subset of size one is one rater).

    The subset is drawn **uniformly among all subsets** of the eligible raters
    with at least ``min_raters`` members (the size ``k`` is drawn with
    probability proportional to ``C(n, k)``, then a uniform subset of that
    size), unless ``n_raters`` fixes its size exactly (MedUHIP table 1 reports
    one column per size).

    Eligible raters are the valid ones; with ``require_nonempty`` only valid
    raters whose mask has a foreground pixel, falling back to all valid raters
    when none has. When ``require_nonempty`` leaves fewer eligible raters than
    ``min_raters``/``n_raters``, the size is capped at what is eligible.

    Returns ``(fused (*spatial) bool, chosen (k,) int64)`` where ``chosen`` are
    sorted indices into the original ``R`` raters.
    """
    m, valid = _check(masks, rater_valid, "random_subset_fusion")
    rng = np.random.default_rng(seed)
    n_valid = int(valid.sum())
    want = min_raters if n_raters is None else n_raters
    if want < 1 or want > n_valid:
        what = "min_raters" if n_raters is None else "n_raters"
        raise ValueError(f"random_subset_fusion: {what}={want} must be between 1 and the {n_valid} valid raters")
    eligible = valid.copy()
    if require_nonempty:
        nonempty = valid & m.reshape(m.shape[0], -1).any(axis=1)
        if nonempty.any():
            eligible = nonempty
    idx = np.flatnonzero(eligible)
    n = idx.size
    lo = min(want, n)
    if n_raters is not None:
        k = lo
    else:
        sizes = np.arange(lo, n + 1)
        p = np.array([comb(n, int(s)) for s in sizes], dtype=np.float64)
        k = int(rng.choice(sizes, p=p / p.sum()))
    chosen = np.sort(rng.choice(idx, size=k, replace=False)).astype(np.int64)
    return majority_vote(m[chosen]), chosen


def spa_weighted_fusion(masks, seed=None, rater_valid=None) -> tuple[np.ndarray, np.ndarray]:
    """SPA's stochastic combination of rater labels, ``(fused, a)``.

    spa.txt section 3.5 (Training Details): "we initialize the ground truth y
    as a stochastic combination of collected multi-rater labels:
    y = 1_0.5(sum A x Y), where A represents the weights uniformly sampled from
    [0, 1] and Y denotes the set of user annotations."

    We compute ``y = 1[ sum_r a_r Y_r / sum_r a_r > 0.5 ]`` with
    ``a_r ~ U[0, 1)`` drawn independently per valid rater. Deviation: the paper
    writes the sum without normalisation; read literally, one rater with
    ``a_r > 0.5`` would already reach the threshold and the target would drift
    towards the union of all raters as ``R`` grows. Normalising by ``sum a_r``
    makes it a randomly weighted majority vote, consistent with the paper's
    ``1_0.5`` used for the mean in section 3.3.

    Returns ``fused`` ``(*spatial)`` bool and ``a`` ``(R,)`` float64 (0 for
    invalid raters, which take no part).
    """
    m, valid = _check(masks, rater_valid, "spa_weighted_fusion")
    rng = np.random.default_rng(seed)
    a = np.zeros(m.shape[0], dtype=np.float64)
    a[valid] = rng.random(int(valid.sum()))
    if a.sum() <= 0:  # all draws exactly 0: probability ~0, fall back to equal weights
        a[valid] = 1.0
    w = a[valid] / a[valid].sum()
    score = np.tensordot(w, m[valid].astype(np.float64), axes=1)
    return score > 0.5, a


def staple(
    masks,
    rater_valid=None,
    max_iterations: int | None = None,
    return_performance: bool = False,
):
    """STAPLE consensus (Warfield, Zou & Wells, IEEE TMI 2004) via SimpleITK.

    Estimates each rater's sensitivity ``p_r`` and specificity ``q_r`` by EM and
    the posterior probability that each pixel is foreground; raters who
    disagree with the consensus get low ``p_r``/``q_r`` and so less say.
    SimpleITK is imported here (extra ``clinloop[itk]``); a clear
    ``ImportError`` is raised when it is missing. 2-D and 3-D masks only.

    Returns ``(mask (*spatial) bool = prob > 0.5, prob (*spatial) float32)``;
    with ``return_performance`` also ``(sensitivity (R,), specificity (R,))``
    float64 arrays, NaN for invalid raters.

    Degenerate inputs: when all valid masks are identical (including all empty
    or all full, where ITK's EM returns NaN) the answer is that mask (prob 0/1,
    sensitivity = specificity = 1) without running EM; any other NaN ITK
    returns is replaced by the rater mean.
    """
    m, valid = _check(masks, rater_valid, "staple")
    if m.ndim - 1 not in (2, 3):
        raise ValueError(f"staple: SimpleITK STAPLE needs 2-D or 3-D masks, got masks of shape {m.shape}")
    mv = m[valid]
    sens = np.full(m.shape[0], np.nan)
    spec = np.full(m.shape[0], np.nan)
    if (mv == mv[:1]).all():
        prob = mv[0].astype(np.float32)
        sens[valid], spec[valid] = 1.0, 1.0
    else:
        try:
            import SimpleITK as sitk
        except ImportError as e:  # pragma: no cover - SimpleITK is in the dev environment
            raise ImportError(
                "staple() needs SimpleITK: pip install 'clinloop[itk]' (or SimpleITK>=2.3)"
            ) from e
        f = sitk.STAPLEImageFilter()
        f.SetForegroundValue(1.0)
        if max_iterations is not None:
            f.SetMaximumIterations(int(max_iterations))
        f.SetNumberOfThreads(1)  # deterministic sums, and the machine's cores are shared
        images = [sitk.GetImageFromArray(x.astype(np.uint8)) for x in mv]
        prob = sitk.GetArrayFromImage(f.Execute(images)).astype(np.float32)
        if not np.isfinite(prob).all():
            bad = ~np.isfinite(prob)
            prob[bad] = mv.mean(axis=0, dtype=np.float64)[bad]
        sens[valid] = f.GetSensitivity()
        spec[valid] = f.GetSpecificity()
    out = prob > 0.5, prob
    return (*out, sens, spec) if return_performance else out


# ------------------------------------------------------------ name -> fusion
FUSIONS: dict[str, Callable] = {
    "majority": majority_vote,
    "soft": soft_label,
    "random-subset": random_subset_fusion,
    "spa-weighted": spa_weighted_fusion,
    "staple": staple,
}
_RANDOM = {"random-subset", "spa-weighted"}


def fuse(name: str, masks, rater_valid=None, seed=None) -> np.ndarray:
    """Apply fusion ``name`` (a key of :data:`FUSIONS`) and return only the
    fused label, ``(*spatial)``: bool for the binary fusions, float32 for
    ``"soft"``. ``seed`` is used by the random fusions and ignored otherwise."""
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}; choose from {', '.join(FUSIONS)}")
    fn = FUSIONS[name]
    out = fn(masks, seed, rater_valid=rater_valid) if name in _RANDOM else fn(masks, rater_valid=rater_valid)
    return out[0] if isinstance(out, tuple) else out
