"""Planes of a volume for a 2-D model: slicing along an axis and resampling
anisotropic planes to square pixels.

A volume is channels-first ``(C, D, H, W)`` with voxel ``spacing = (s_z, s_y,
s_x)``. A click ``(x, y, z)`` (column, row, slice) and an ``axis`` pick a plane:

=====  ==========  ====================  ================  ===================
axis   view        plane (rows, cols)    slice index       in-plane (col, row)
=====  ==========  ====================  ================  ===================
0      axial       ``(H, W)``            ``z``             ``(x, y)``
1      coronal     ``(D, W)``            ``y``             ``(x, z)``
2      sagittal    ``(D, H)``            ``x``             ``(y, z)``
=====  ==========  ====================  ================  ===================

Anisotropy: a 2-D model was trained on square pixels, so a plane whose row and
column spacings differ by more than ``tolerance`` (relative) is resampled
bilinearly (``align_corners=False``) to square pixels of the finer spacing
before the model sees it (e.g. a coronal plane of a volume with 5 mm slices
and 1 mm pixels: 24 rows x 96 columns -> 120 x 96), and the model's output
(probabilities, candidates as fractions) is resampled back to the plane's own
grid. Axial planes of the usual volumes (equal in-plane spacing) are never
resampled, so they reach the model exactly as a 2-D image would.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

AXIS_NAMES = ("axial", "coronal", "sagittal")


def check_axis(axis) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not 0 <= int(axis) <= 2:
        raise ValueError(f"axis must be 0 (axial), 1 (coronal) or 2 (sagittal); got {axis!r}")
    return int(axis)


def plane_shape(shape: tuple[int, int, int], axis: int) -> tuple[int, int]:
    """``(rows, cols)`` of a plane of a ``(D, H, W)`` volume along ``axis``."""
    d, h, w = shape
    return ((h, w), (d, w), (d, h))[axis]


def plane_spacing(spacing: tuple[float, float, float], axis: int) -> tuple[float, float]:
    sz, sy, sx = spacing
    return ((sy, sx), (sz, sx), (sz, sy))[axis]


def split_point(point: tuple[float, float, float], axis: int) -> tuple[int, tuple[float, float]]:
    """``(x, y, z)`` -> (slice index along ``axis``, in-plane ``(col, row)``)."""
    x, y, z = point
    return ((int(round(z)), (x, y)), (int(round(y)), (x, z)), (int(round(x)), (y, z)))[axis]


def take(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Plane ``index`` along ``axis`` of ``(..., D, H, W)`` -> ``(..., rows, cols)`` (a view)."""
    sl = [slice(None)] * volume.ndim
    sl[volume.ndim - 3 + axis] = index
    return volume[tuple(sl)]


def put(volume: np.ndarray, axis: int, index: int, plane: np.ndarray) -> None:
    """Write ``plane (..., rows, cols)`` into ``volume (..., D, H, W)`` at ``index`` along ``axis``."""
    sl = [slice(None)] * volume.ndim
    sl[volume.ndim - 3 + axis] = index
    volume[tuple(sl)] = plane


@dataclass(frozen=True)
class PlaneGrid:
    """How a plane of ``size`` (rows, cols) maps to the square-pixel grid the model sees."""

    size: tuple[int, int]
    model_size: tuple[int, int]

    @property
    def resampled(self) -> bool:
        return self.size != self.model_size

    def to_model(self, plane: np.ndarray) -> np.ndarray:
        """``(C, rows, cols)`` -> ``(C, *model_size)`` float32."""
        if not self.resampled:
            return plane
        t = torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32))[None]
        return F.interpolate(t, size=self.model_size, mode="bilinear", align_corners=False)[0].numpy()

    def point_to_model(self, col: float, row: float) -> tuple[float, float]:
        """Pixel centre to pixel centre, as :func:`clinloop.models.litemedsam.preprocess.points_to_model`."""
        fr, fc = self.model_size[0] / self.size[0], self.model_size[1] / self.size[1]
        return (col + 0.5) * fc - 0.5, (row + 0.5) * fr - 0.5

    def from_model(self, values: torch.Tensor) -> torch.Tensor:
        """``(..., *model_size)`` float -> ``(..., rows, cols)`` (bilinear)."""
        if not self.resampled:
            return values
        lead = values.shape[:-2]
        v = values.reshape(-1, 1, *self.model_size).float()
        return F.interpolate(v, size=self.size, mode="bilinear", align_corners=False).reshape(*lead, *self.size)


def plane_grid(size: tuple[int, int], spacing: tuple[float, float], tolerance: float = 0.05) -> PlaneGrid:
    """Square-pixel grid of a plane: rows and cols scaled by ``spacing / min(spacing)`` when the
    spacings differ by more than ``tolerance`` (relative), else the plane's own grid."""
    sr, sc = float(spacing[0]), float(spacing[1])
    s = min(sr, sc)
    if max(sr, sc) / s <= 1 + tolerance:
        return PlaneGrid(tuple(size), tuple(size))
    return PlaneGrid(tuple(size), (max(1, int(round(size[0] * sr / s))), max(1, int(round(size[1] * sc / s)))))
