"""Simulated user hints (mecca.txt §3 and §5.1).

"At each step, users click on some edges, which are not correctly predicted, as
hints"; "we generate the hint map ... by randomly selecting the wrong
segmentation points on the edges with the ground truth". :func:`simulate_clicks`
does exactly that: candidates are the pixels of the ground truth's boundary band
(its inner and outer one-pixel contour) that the current prediction gets wrong;
a click is *positive* where the label is foreground. When no boundary pixel is
wrong but errors remain (e.g. a false-positive blob far away), the contour of the
error region is used instead.

:func:`hint_map` turns clicks into the agents' hint channel ``h``: a Gaussian
bump (radius ``sigma`` pixels) per click, +1 at positive and -1 at negative
clicks, clicks of one sign combined by maximum, ``h = pos - neg`` in [-1, 1]
(the paper does not give the transform; a signed Gaussian map is our choice).
Clicks accumulate over the session: the map at step t shows every hint so far.

Points follow the session convention: ``(x, y)`` = (column, row) in 2-D and
``(x, y, z)`` = (column, row, slice) in 3-D; arrays are ``(H, W)`` / ``(D, H, W)``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

Click = tuple[tuple[float, ...], bool]


def boundary_band(mask: np.ndarray) -> np.ndarray:
    """Inner and outer one-pixel contour of a bool mask (face connectivity)."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return np.zeros_like(m)
    st = ndi.generate_binary_structure(m.ndim, 1)
    inner = m & ~ndi.binary_erosion(m, st, border_value=0)
    outer = ndi.binary_dilation(m, st) & ~m
    return inner | outer


def click_candidates(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Wrongly predicted boundary points (bool, like ``label``)."""
    pred, label = np.asarray(pred, bool), np.asarray(label, bool)
    if pred.shape != label.shape:
        raise ValueError(f"prediction {pred.shape} and label {label.shape} differ in shape")
    err = pred != label
    cand = err & boundary_band(label)
    if not cand.any() and err.any():
        cand = err & boundary_band(err) & err
        if not cand.any():
            cand = err
    return cand


def simulate_clicks(pred: np.ndarray, label: np.ndarray, n: int, rng: np.random.Generator) -> list[Click]:
    """Up to ``n`` clicks drawn uniformly (without replacement) among the wrongly
    predicted boundary points; ``[((x, y[, z]), positive), ...]``."""
    if n < 0:
        raise ValueError(f"number of clicks must be >= 0, got {n}")
    cand = click_candidates(pred, label)
    idx = np.flatnonzero(cand)
    if idx.size == 0 or n == 0:
        return []
    pick = rng.choice(idx, size=min(n, idx.size), replace=False)
    label = np.asarray(label, bool)
    out = []
    for flat in np.sort(pick):
        coord = np.unravel_index(flat, label.shape)  # (row, col) or (slice, row, col)
        out.append((tuple(float(c) for c in coord[::-1]), bool(label[coord])))
    return out


def hint_map(clicks: Sequence[Click], shape: Sequence[int], sigma: float = 2.0) -> np.ndarray:
    """Signed Gaussian hint map ``(*shape)`` float32 in [-1, 1] (see module docstring)."""
    shape = tuple(int(s) for s in shape)
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    pos = np.zeros(shape, np.float32)
    neg = np.zeros(shape, np.float32)
    r = int(np.ceil(3 * sigma))
    for point, positive in clicks:
        if len(point) != len(shape):
            raise ValueError(f"click {point} has {len(point)} coordinates for a {len(shape)}-D image")
        centre = [float(c) for c in point[::-1]]  # array order
        lo = [max(0, int(np.floor(c)) - r) for c in centre]
        hi = [min(n, int(np.ceil(c)) + r + 1) for c, n in zip(centre, shape)]
        if any(h <= l for l, h in zip(lo, hi)):
            continue
        grids = np.meshgrid(*[np.arange(l, h) for l, h in zip(lo, hi)], indexing="ij")
        d2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
        bump = np.exp(-d2 / (2 * sigma**2)).astype(np.float32)
        target = pos if positive else neg
        sl = tuple(slice(l, h) for l, h in zip(lo, hi))
        np.maximum(target[sl], bump, out=target[sl])
    return pos - neg


def click_reach(clicks: Sequence[Click], shape: Sequence[int], radius: float) -> np.ndarray:
    """The agents a session lets the hints move: bool ``(*shape)``, True within Euclidean
    distance ``radius`` (voxels of ``shape``'s grid) of some click, of either sign.

    Not in the paper (``MECCAConfig.click_reach``, inference only): mecca.txt lets every
    agent act at every step; on BraTS the trained policies then drift away from the clicks
    and lose Dice over the steps (docs/methods/mecca.md, "Clicks that act where they are
    given"). ``radius <= 0`` or no clicks: all False."""
    shape = tuple(int(s) for s in shape)
    near = np.zeros(shape, bool)
    if radius <= 0:
        return near
    axes = [np.arange(n, dtype=np.float32) for n in shape]
    for point, _ in clicks:
        if len(point) != len(shape):
            raise ValueError(f"click {point} has {len(point)} coordinates for a {len(shape)}-D image")
        centre = [float(c) for c in point[::-1]]  # array order
        lo = [max(0, int(np.floor(c - radius))) for c in centre]
        hi = [min(n, int(np.ceil(c + radius)) + 1) for c, n in zip(centre, shape)]
        if any(h <= l for l, h in zip(lo, hi)):
            continue
        sl = tuple(slice(l, h) for l, h in zip(lo, hi))
        d2 = sum(((a[s] - c) ** 2).reshape([-1 if k == j else 1 for k in range(len(shape))])
                 for j, (a, s, c) in enumerate(zip(axes, sl, centre)))
        near[sl] |= d2 <= radius * radius
    return near
