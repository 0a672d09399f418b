"""Advice regions for the next interaction (mecca.txt §4.3, Fig. 5).

The image is over-segmented with SLIC supervoxels (scikit-image; paper settings
``spacing = (2, 2, 2)``, ``compactness = 0.1``, 100 initial segments, the number
"gradually declines during the refinement iterations"). The mean action
confidence is computed inside each supervoxel and the ``k = 5`` *least*
confident ones are recommended (the paper's text says "sort in descending
order ... top 5"; regions of low confidence are what Fig. 5 and §4.3 describe
as advice, so we rank by ascending confidence).

Arrays: ``image`` and ``confidence`` ``(H, W)`` or ``(D, H, W)``; regions are bool
masks of that shape, disjoint, least confident first.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def n_segments_at(step: int, start: int = 100, decay: float = 0.85, minimum: int = 20) -> int:
    """Supervoxel count at refinement step ``step`` (0-based): ``max(minimum, start·decay^step)``."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return max(int(minimum), int(round(start * decay**step)))


def supervoxels(image: np.ndarray, n_segments: int = 100, compactness: float = 0.1,
                spacing: Sequence[float] = (2.0, 2.0, 2.0)) -> np.ndarray:
    """SLIC labels (int, 0-based) of a single-channel 2-D or 3-D image.

    ``spacing`` is trimmed to the image's dimensionality (2-D: the last two)."""
    from skimage.segmentation import slic

    img = np.asarray(image, dtype=np.float64)
    if img.ndim not in (2, 3):
        raise ValueError(f"supervoxels need a 2-D or 3-D image, got shape {img.shape}")
    if n_segments < 1:
        raise ValueError(f"n_segments must be >= 1, got {n_segments}")
    sp = np.asarray(tuple(spacing)[-img.ndim:], dtype=np.float64)
    lo, hi = img.min(), img.max()
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)  # SLIC's compactness assumes [0, 1]-ish intensities
    return slic(img, n_segments=int(n_segments), compactness=float(compactness), spacing=sp,
                channel_axis=None, start_label=0, enforce_connectivity=True)


def rank_regions(confidence: np.ndarray, labels: np.ndarray, k: int = 5) -> list[np.ndarray]:
    """The ``k`` supervoxels with the lowest mean confidence, least confident first
    (ties broken by label number), as bool masks."""
    lab = np.asarray(labels)
    return [lab == r for r in rank_region_ids(confidence, lab, k)]


def rank_region_ids(confidence: np.ndarray, labels: np.ndarray, k: int = 5) -> list[int]:
    """The labels of :func:`rank_regions`' supervoxels, least confident first."""
    c = np.asarray(confidence, dtype=np.float64)
    lab = np.asarray(labels)
    if c.shape != lab.shape:
        raise ValueError(f"confidence {c.shape} and supervoxel labels {lab.shape} differ in shape")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    flat = lab.ravel().astype(np.int64)
    counts = np.bincount(flat)
    sums = np.bincount(flat, weights=c.ravel(), minlength=counts.size)
    present = np.flatnonzero(counts)
    means = sums[present] / counts[present]
    return [int(r) for r in present[np.lexsort((present, means))][:k]]


def advice_regions(image: np.ndarray, confidence: np.ndarray, k: int = 5, n_segments: int = 100,
                   compactness: float = 0.1, spacing: Sequence[float] = (2.0, 2.0, 2.0),
                   labels: np.ndarray | None = None) -> list[np.ndarray]:
    """SLIC + ranking in one call (``labels`` may be passed to reuse a segmentation)."""
    if labels is None:
        labels = supervoxels(image, n_segments, compactness, spacing)
    return rank_regions(confidence, labels, k)
