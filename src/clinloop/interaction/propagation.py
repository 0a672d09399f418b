"""The propagation rules of a volumetric session (:mod:`clinloop.models.spa.volume`):
its options, the stop rule and the prompt point taken from a mask."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from clinloop.interaction import planes as pl


@dataclass
class SliceResult:
    """One slice of a growing 3-D proposal (what a volume session's ``progress`` receives)."""

    axis: int
    index: int
    mask: np.ndarray  # (rows, cols) bool, the plane along ``axis`` (pl.plane_shape)
    probability: np.ndarray  # (rows, cols) float
    done: int  # slices finished so far in this action


@dataclass
class VolumeConfig:
    """Options of a volumetric session (rules: :mod:`clinloop.models.spa.volume`)."""

    axis: int = 0  # default propagation axis: 0 axial (slices along D), 1 coronal (H), 2 sagittal (W)
    spacing: tuple[float, float, float] | None = None  # (s_z, s_y, s_x); None: the sample's, else 1
    max_voxels: int = 32_000_000  # refuse larger volumes (crop them first)
    min_area: int = 4  # stop below this many plane pixels
    min_area_fraction: float = 0.0  # ... or below this share of the largest slice kept so far in this direction (off)
    # stop a slice whose area regrows: once the kept slices have shrunk below regrow_below x the peak, a
    # slice larger than regrow_factor x the smallest kept so far in this direction is something else the box
    # reached past the structure's end (0: off; docs/methods/spa.md "Volumes", benchmarks/volume_oracle.py)
    regrow_below: float = 0.0
    regrow_factor: float = 1.1
    min_overlap: float = 0.2  # stop when |new & prev| / min(|new|, |prev|) is below this
    max_centroid_shift: float = 1.0  # stop when the centroid moves more than this many radii of prev
    # stop when u = sum(4 p (1 - p)) / |y_app| (the N samples disagree) exceeds this bound, raised to
    # anchor_uncertainty x u of the anchor (the clicked slice) when that is higher: a structure whose
    # clicked slice is itself that uncertain (BraTS tumours under spa-general: u 0.6-1.1 inside) is
    # followed while its slices stay as certain as the click's (docs/methods/spa.md "Volumes",
    # benchmarks/volume_stop_rule.py)
    max_uncertainty: float = 0.75
    anchor_uncertainty: float = 1.0  # 0: the fixed bound only (the rule before 2026-12)
    use_box: bool = True  # propagate with the previous mask's box (measured best, see the module docstring)
    box_margin: float = 0.0  # move each side of that box outwards by this share of its side (propagated_box)
    # the propagated box bounds the pixels whose mean of the N samples exceeds this (0.5: y_app's box; lower:
    # the envelope of more of the samples, so a slice the samples disagree on passes a wider box)
    box_threshold: float = 0.5
    use_point: bool = False  # ... with a point at the previous mask's interior
    use_mask: bool = False  # ... with the previous mask as the mask prompt (±4 logits)
    anisotropy_tolerance: float = 0.05  # resample planes whose pixel spacings differ by more (relative)
    encode_ahead: int = 0  # encode up to this many slices beyond each frontier in a background thread (0: off)
    # orthogonal refinement (clinloop.models.spa.orthogonal): the planes along the two other axes, prompted by
    # the box of the propagated mask (sides moved out by orthogonal_margin), vote with it per latent sample;
    # skipped when the propagated slices span less than orthogonal_min_extent in-plane pixels (slices x slice
    # spacing / finest in-plane spacing: short structures, thin orthogonal planes) or their region holds more
    # than orthogonal_max_voxels voxels
    orthogonal: bool = True
    orthogonal_margin: float = 0.05
    orthogonal_min_extent: float = 16.0
    orthogonal_max_voxels: int = 8_000_000

    def __post_init__(self) -> None:
        pl.check_axis(self.axis)
        if isinstance(self.max_voxels, bool) or not isinstance(self.max_voxels, int) or self.max_voxels < 1:
            raise ValueError(f"max_voxels must be a positive integer, got {self.max_voxels!r}")
        if self.min_area < 1:
            raise ValueError(f"min_area must be >= 1 pixel, got {self.min_area}")
        if not 0 <= self.min_area_fraction < 1:
            raise ValueError(f"min_area_fraction must be in 0 .. 1 (exclusive), got {self.min_area_fraction}")
        if not 0 <= self.regrow_below <= 1:
            raise ValueError(f"regrow_below must be in 0 .. 1 (a share of the peak area), got {self.regrow_below}")
        if not self.regrow_factor >= 1:
            raise ValueError(f"regrow_factor must be >= 1, got {self.regrow_factor}")
        if not 0 <= self.min_overlap <= 1:
            raise ValueError(f"min_overlap must be in 0 .. 1, got {self.min_overlap}")
        if not self.anchor_uncertainty >= 0:
            raise ValueError(f"anchor_uncertainty must be >= 0, got {self.anchor_uncertainty}")
        if not self.max_uncertainty > 0:
            raise ValueError(f"max_uncertainty must be > 0, got {self.max_uncertainty}")
        if not self.max_centroid_shift > 0:
            raise ValueError(f"max_centroid_shift must be > 0, got {self.max_centroid_shift}")
        if isinstance(self.encode_ahead, bool) or not isinstance(self.encode_ahead, int) or self.encode_ahead < 0:
            raise ValueError(f"encode_ahead must be a non-negative integer (slices), got {self.encode_ahead!r}")
        if not 0 <= self.box_margin <= 1:
            raise ValueError(f"box_margin must be in 0 .. 1 (a share of the box's side), got {self.box_margin}")
        if not 0 < self.box_threshold <= 0.5:  # a superset of y_app: never empty where y_app is not
            raise ValueError(f"box_threshold must be in (0, 0.5] (0.5: y_app's box), got {self.box_threshold}")
        if not 0 <= self.orthogonal_margin <= 1:
            raise ValueError(f"orthogonal_margin must be in 0 .. 1 (a share of the box's side), "
                             f"got {self.orthogonal_margin}")
        if not self.orthogonal_min_extent >= 1:
            raise ValueError(f"orthogonal_min_extent must be >= 1 (pixels), got {self.orthogonal_min_extent}")
        v = self.orthogonal_max_voxels
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"orthogonal_max_voxels must be a positive integer, got {v!r}")
        if not (self.use_point or self.use_mask or self.use_box):
            raise ValueError("propagation needs at least one of use_point, use_mask, use_box")


def check_spacing(spacing: Any) -> tuple[float, float, float]:
    """Three finite positive voxel sizes ``(s_z, s_y, s_x)``; ValueError otherwise."""
    try:
        s = tuple(float(v) for v in spacing)
    except (TypeError, ValueError) as e:
        raise ValueError(f"spacing must be 3 numbers (s_z, s_y, s_x); got {spacing!r}") from e
    if len(s) != 3 or not all(math.isfinite(v) and v > 0 for v in s):
        raise ValueError(f"spacing must be 3 finite positive numbers (s_z, s_y, s_x) for a (D, H, W) volume; "
                         f"got {spacing!r}")
    return s


def interior_point(mask: torch.Tensor) -> tuple[float, float]:
    """``(x, y)`` of the pixel of a non-empty 2-D bool mask farthest from its boundary (first in
    row-major order on ties)."""
    from scipy.ndimage import distance_transform_edt

    d = distance_transform_edt(np.pad(mask.numpy(), 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(d)), d.shape)
    return float(c), float(r)


def propagated_box(guide: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """The box prompt ``(1, 4)`` ``[x0, y0, x1, y1]`` for the next slice from the previous slice's
    y_app ``guide`` (a non-empty ``(256, 256)`` bool, model frame): its bounding box with each side
    moved outwards by ``margin`` times the box's width (x) or height (y), clipped to the frame.
    SPA's training boxes are the target's box with up to 10 % + 4 px of slack per side
    (:func:`clinloop.training.spa_corrective.jittered_box`); a tight box of a structure that grows
    from slice to slice clips it, so the mask shrinks slice after slice."""
    rr, cc = torch.nonzero(guide, as_tuple=True)
    x0, x1, y0, y1 = float(cc.min()), float(cc.max()), float(rr.min()), float(rr.max())
    mx, my = margin * (x1 - x0 + 1), margin * (y1 - y0 + 1)
    h, w = guide.shape[-2:]
    return torch.tensor([[max(0.0, x0 - mx), max(0.0, y0 - my), min(w - 1.0, x1 + mx), min(h - 1.0, y1 + my)]],
                        dtype=torch.float32)


def slice_uncertainty(mask: np.ndarray, prob: np.ndarray) -> float:
    """u = sum(4 p (1 - p)) / |mask| of one plane (inf for an empty mask): how much the N samples
    disagree, relative to the mask's size (1: the disagreement covers as much as the mask)."""
    a = int(mask.sum())
    return float((4 * prob * (1 - prob)).sum()) / a if a else math.inf


def stop_reason(prev: np.ndarray, new: np.ndarray, cfg: VolumeConfig, prob: np.ndarray | None = None,
                peak: int | None = None, anchor_u: float | None = None, trough: int | None = None) -> str | None:
    """The stop rule on two plane masks (module docstring, step 3): a reason or None.
    ``prob``: the new slice's probability (mean of the N samples), for the "uncertain" rule, whose
    bound is ``max(cfg.max_uncertainty, cfg.anchor_uncertainty * anchor_u)`` (``anchor_u``: the
    anchor slice's :func:`slice_uncertainty`); ``peak``: the largest area (pixels) kept so far in
    this direction, for ``min_area_fraction``; ``trough``: the smallest area kept so far in this
    direction, for the "regrow" rule (``regrow_below``)."""
    a_new, a_prev = int(new.sum()), int(prev.sum())
    if a_new == 0:
        return "vanished"
    if a_new < cfg.min_area or (peak is not None and a_new < cfg.min_area_fraction * peak):
        return "small"
    if (cfg.regrow_below > 0 and peak is not None and trough is not None and trough < cfg.regrow_below * peak
            and a_new > cfg.regrow_factor * trough):
        return "regrow"
    bound = cfg.max_uncertainty
    if anchor_u is not None and math.isfinite(anchor_u):
        bound = max(bound, cfg.anchor_uncertainty * anchor_u)
    if prob is not None and slice_uncertainty(new, prob) > bound:
        return "uncertain"
    if a_prev == 0:
        return None
    if (new & prev).sum() / min(a_new, a_prev) < cfg.min_overlap:
        return "jump"
    c_new, c_prev = np.argwhere(new).mean(0), np.argwhere(prev).mean(0)
    if np.hypot(*(c_new - c_prev)) > cfg.max_centroid_shift * math.sqrt(a_prev / math.pi):
        return "jump"
    return None
