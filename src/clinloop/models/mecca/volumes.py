"""Intensity normalisation and the coarse working grid of MECCA models.

Not a paper equation: mecca.txt says nothing about intensities or resolution.
The paper trains on GPUs at full BraTS resolution; on CPUs a model works on a
grid ``zoom`` times coarser per axis (``MECCAConfig.zoom``): the image is
average-pooled once (:func:`zoom_image`), the agents (probabilities ``p``), the
hint map and the SLIC supervoxels live on the coarse grid, and the probability
shown to the user is upsampled (trilinear, :func:`upsample`) to the input size.
Labels are pooled by majority (:func:`zoom_label`). With ``zoom = 1`` nothing
changes (the LIDC models).

Normalisation (``MECCAConfig.norm``):

* ``"image"`` — channel mean, z-score over all pixels (the LIDC models);
* ``"nonzero"`` — channel mean, z-score over the non-zero voxels only (skull-
  stripped MRI such as BraTS FLAIR, where ~83 % of the volume is zero background
  that would otherwise set the mean and the scale); the zero voxels become one
  constant, see :func:`normalise`.

Shapes: images ``(C, *spatial)``; coarse arrays ``(*coarse)`` with
``coarse = ceil(spatial / zoom)``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

NORMS = ("image", "nonzero")


def normalise(image: np.ndarray, mode: str = "image") -> np.ndarray:
    """``(C, *spatial)`` → ``(*spatial)`` float32: channel mean, then a z-score.

    ``mode="image"``: over all voxels. ``mode="nonzero"``: mean and sd of the
    non-zero voxels; zero voxels (outside a skull-stripped brain) are set to
    the value ``-3`` (three sd below the brain mean), so the background is one
    constant, clearly separated from tissue, whatever the scanner scale."""
    if mode not in NORMS:
        raise ValueError(f"unknown normalisation {mode!r}; choose from {', '.join(NORMS)}")
    x = np.asarray(image, dtype=np.float32).mean(axis=0)
    sel = x != 0 if mode == "nonzero" else np.ones(x.shape, bool)
    if not sel.any():
        return np.zeros_like(x)
    vals = x[sel]
    sd = float(vals.std())
    out = (x - float(vals.mean())) / (sd if sd > 1e-6 else 1.0)
    if mode == "nonzero":
        out[~sel] = -3.0
    return out.astype(np.float32)


def coarse_shape(shape: Sequence[int], zoom: int) -> tuple[int, ...]:
    """``ceil(n / zoom)`` per axis."""
    return tuple(-(-int(n) // int(zoom)) for n in shape)


def _pool(x: torch.Tensor, zoom: int) -> torch.Tensor:
    pool = F.avg_pool2d if x.ndim == 4 else F.avg_pool3d
    return pool(x, zoom, ceil_mode=True, count_include_pad=False)


def zoom_image(image: np.ndarray, zoom: int) -> np.ndarray:
    """Average-pool ``(*spatial)`` by ``zoom`` per axis (edge blocks: mean of what exists)."""
    if zoom < 1:
        raise ValueError(f"zoom must be >= 1, got {zoom}")
    x = np.asarray(image, dtype=np.float32)
    if zoom == 1:
        return x
    return _pool(torch.from_numpy(np.ascontiguousarray(x))[None, None], zoom)[0, 0].numpy()


def zoom_label(label: np.ndarray, zoom: int) -> np.ndarray:
    """Majority label of each ``zoom``-block (fraction ≥ 0.5) → bool ``(*coarse)``."""
    return zoom_image(np.asarray(label, np.float32), zoom) >= 0.5


def upsample(p: torch.Tensor, size: Sequence[int], zoom: int | None = None) -> torch.Tensor:
    """``(B, C, *coarse)`` → ``(B, C, *size)``, (tri/bi)linear with ``align_corners=False``;
    identity when the sizes agree. With ``zoom`` (the pooling factor that gave ``coarse``)
    the scale is exactly ``zoom`` and the result is cut to ``size`` (a last, partial
    block of :func:`zoom_image` stays aligned; without it the grid is stretched)."""
    size = tuple(int(s) for s in size)
    if tuple(p.shape[2:]) == size:
        return p
    mode = "bilinear" if p.ndim == 4 else "trilinear"
    if zoom is None:
        return F.interpolate(p, size=size, mode=mode, align_corners=False)
    full = tuple(int(c) * int(zoom) for c in p.shape[2:])
    out = F.interpolate(p, size=full, mode=mode, align_corners=False)
    return out[(slice(None), slice(None)) + tuple(slice(0, n) for n in size)]


def upsample_labels(labels: np.ndarray, size: Sequence[int], zoom: int) -> np.ndarray:
    """Nearest upsampling of a label map (e.g. supervoxels, or a confidence map) by ``zoom``
    (each coarse voxel becomes a ``zoom``-block), cut to ``size``."""
    out = np.asarray(labels)
    for ax in range(out.ndim):  # block repeats, one axis at a time (memory-bound, no fancy indexing)
        out = np.repeat(out, int(zoom), axis=ax)
    return out[tuple(slice(0, int(n)) for n in size)]


def to_coarse_point(point: Sequence[float], zoom: int) -> tuple[float, ...]:
    """A click ``(x, y[, z])`` in input voxels → the coarse grid (block centre convention:
    input voxel ``i`` lies at ``(i + 0.5) / zoom - 0.5``)."""
    return tuple((float(v) + 0.5) / zoom - 0.5 for v in point)


def crop_origin(centre: Sequence[float], spatial: Sequence[int], size) -> tuple[int, ...]:
    """The first voxel (array order) of a crop of ``size`` per axis (an int, or one per axis)
    centred on ``centre`` (array order) in an array of shape ``spatial``: shifted inside the
    array where it fits, else centred and padded (negative or overhanging)."""
    sizes = (int(size),) * len(centre) if np.ndim(size) == 0 else tuple(int(v) for v in size)
    if len(sizes) != len(centre) or len(spatial) != len(centre):
        raise ValueError(f"crop size {tuple(sizes)} does not match {len(centre)} spatial axes")
    out = []
    for c, n, k in zip(centre, spatial, sizes):
        lo = int(round(float(c))) - k // 2
        out.append(min(max(lo, 0), n - k) if n >= k else lo)
    return tuple(out)


def crop_slices(origin: Sequence[int], spatial: Sequence[int], sizes: Sequence[int]) -> tuple[tuple, tuple]:
    """``(src, dst)`` slices: the part of the crop at ``origin`` that lies inside the array
    (``src``, array coordinates) and where it sits in the crop (``dst``)."""
    src, dst = [], []
    for lo, n, k in zip(origin, spatial, sizes):
        s0, s1 = max(lo, 0), min(lo + k, n)
        src.append(slice(s0, s1))
        dst.append(slice(s0 - lo, s1 - lo))
    return tuple(src), tuple(dst)


def crop_around(arr: np.ndarray, centre, size, fill=0) -> np.ndarray:
    """Crop ``(..., *spatial)`` to ``size`` per spatial axis (an int, or one per axis)
    around ``centre`` (array order, :func:`crop_origin`), padding with ``fill``."""
    nd = len(centre)
    spatial = arr.shape[-nd:]
    sizes = (int(size),) * nd if np.ndim(size) == 0 else tuple(int(v) for v in size)
    origin = crop_origin(centre, spatial, sizes)
    out = np.full(arr.shape[:-nd] + sizes, fill, dtype=arr.dtype)
    src, dst = crop_slices(origin, spatial, sizes)
    out[(...,) + dst] = arr[(...,) + src]
    return out
