"""Zoom-in for SPA's corrective clicks (not in spa.txt; deviation).

RITM's Zoom-In (Sofiiuk et al., "Reviving iterative training with mask guidance for
interactive segmentation", ICIP 2022) and FocalClick (Chen et al., CVPR 2022): once a
first mask exists, the next prediction is made on a crop around it, resized to the
network's input, so a small structure is seen at several times the resolution. On
LIDC's 128² crops the model frame has 2 pixels per input pixel and the image embedding
one token per 2 × 2 input pixels, so a corrective click on a one-pixel rim asks the
network to move the border by half a token; on a crop of 32 pixels it is two tokens.

A corrective click (:meth:`clinloop.models.spa.model.SPAState._step`, config ``zoom_in`` > 0)
is decoded in the full frame first; with ``zoom_when = "missed"`` the zoom runs only when that
answer leaves the new click on the wrong side. :func:`zoom_box` then places the crop around that answer,
the mask prompt and the clicks (FocalClick's coarse-to-fine order, so a crop never cuts off
what the click added), and the N samples are decoded again in the crop under the same latents
z_n. ``zoom_mode = "mean"`` averages the two frames' logits inside the crop; ``"crop"`` keeps
the crop's. Outside the crop the full frame's logits stay.

:class:`ZoomView` is one crop: the image cut to :func:`zoom_box`, prepared as the full
image is (:func:`clinloop.models.litemedsam.preprocess.preprocess`, with the *full*
image's intensity range, so the crop looks as it does in the full image). Prompts enter
the view's model frame (:meth:`ZoomView.points`, :meth:`ZoomView.mask`,
:meth:`ZoomView.box_prompt`) and the N sampled logits return to the full image's model frame
(:meth:`ZoomView.to_full`), where fusion, K-means and the constraints work as before.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from clinloop.models.litemedsam.preprocess import (ResizeInfo, box_to_model, mask_to_model, points_to_model,
                                                   postprocess_logits, preprocess)

OUTSIDE_LOGIT = -20.0  # the full frame outside the crop: background


def zoom_box(mask: np.ndarray, points, expansion: float, min_fraction: float) -> tuple[int, int, int, int]:
    """The crop ``(y0, y1, x0, x1)`` (input pixels, half-open) around ``mask (H, W)`` bool and
    ``points`` (input-frame (x, y)): a square of side ``expansion`` × the longest side of their
    bounding box, at least ``min_fraction`` × the image's longest side, centred on the box and
    shifted (then cut) to lie inside the image."""
    if expansion < 1:
        raise ValueError(f"zoom expansion must be >= 1, got {expansion}")
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    px = [float(p[0]) for p in points]
    py = [float(p[1]) for p in points]
    allx, ally = np.concatenate([xs, px]), np.concatenate([ys, py])
    if allx.size == 0:
        return 0, h, 0, w
    x0, x1, y0, y1 = allx.min(), allx.max() + 1, ally.min(), ally.max() + 1
    side = max(expansion * max(x1 - x0, y1 - y0), min_fraction * max(h, w), 8.0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2

    def span(c: float, n: int) -> tuple[int, int]:
        s = min(int(np.ceil(side)), n)
        lo = int(np.clip(round(c - s / 2), 0, n - s))
        return lo, lo + s

    (by0, by1), (bx0, bx1) = span(cy, h), span(cx, w)
    return by0, by1, bx0, bx1


@dataclass(frozen=True)
class ZoomView:
    """One crop of the image, prepared for the network: ``x (3, 256, 256)``, ``info`` (how the crop
    sits in its model frame), ``box = (y0, y1, x0, x1)`` in input pixels."""

    x: torch.Tensor
    info: ResizeInfo
    box: tuple[int, int, int, int]

    @classmethod
    def crop(cls, chw, box: tuple[int, int, int, int], value_range: tuple[float, float]) -> "ZoomView":
        """A channel-first ``chw (C, H, W)`` image (:func:`~clinloop.models.litemedsam.preprocess.to_chw`)
        cut to ``box``; intensities mapped with the full image's ``value_range`` (lo, hi)."""
        y0, y1, x0, x1 = box
        x, info = preprocess(chw[:, y0:y1, x0:x1], value_range=value_range)
        return cls(x, info, box)

    def points(self, points) -> np.ndarray:
        """Input-frame ``(x, y)`` points -> this view's model frame."""
        p = np.asarray(points, np.float64).reshape(-1, 2) - [self.box[2], self.box[0]]
        return points_to_model(p, self.info)

    def box_prompt(self, box) -> np.ndarray:
        """An inclusive input-frame box ``(x0, y0, x1, y1)`` -> this view's model frame (cut to the crop)."""
        y0, y1, x0, x1 = self.box
        b = np.asarray(box, np.float64)
        b = np.array([np.clip(b[0] - x0, 0, x1 - x0 - 1), np.clip(b[1] - y0, 0, y1 - y0 - 1),
                      np.clip(b[2] - x0, 0, x1 - x0 - 1), np.clip(b[3] - y0, 0, y1 - y0 - 1)])
        return box_to_model(b, self.info)

    def mask(self, mask: np.ndarray) -> torch.Tensor:
        """An input-frame ``(H, W)`` bool mask -> this view's ``(256, 256)`` bool model frame."""
        y0, y1, x0, x1 = self.box
        return mask_to_model(np.asarray(mask, bool)[y0:y1, x0:x1], self.info) > 0.5

    def to_full(self, logits: torch.Tensor, full: ResizeInfo, outside: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, 256, 256)`` logits in this view's model frame -> the full image's model frame
        (bilinear, pixel centre to pixel centre); outside the crop ``outside`` (same shape, the
        full-frame logits) or ``OUTSIDE_LOGIT``."""
        t = full.target
        sx, sy = full.scale_xy
        u = (torch.arange(t, dtype=torch.float32) + 0.5) / sx - 0.5  # full model frame -> input pixels
        v = (torch.arange(t, dtype=torch.float32) + 0.5) / sy - 0.5
        y0, y1, x0, x1 = self.box
        zx, zy = self.info.scale_xy
        gx = ((u - x0 + 0.5) * zx) / t * 2 - 1  # -> the view's model frame, normalised (align_corners=False)
        gy = ((v - y0 + 0.5) * zy) / t * 2 - 1
        grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)[None].expand(len(logits), -1, -1, -1)
        out = F.grid_sample(logits[:, None].float(), grid, mode="bilinear", padding_mode="border",
                            align_corners=False)[:, 0]
        inside_x = (u > x0 - 0.5) & (u < x1 - 0.5) & (torch.arange(t) < full.resized_size[1])
        inside_y = (v > y0 - 0.5) & (v < y1 - 0.5) & (torch.arange(t) < full.resized_size[0])
        inside = inside_y[:, None] & inside_x[None, :]
        return torch.where(inside, out, torch.full_like(out, OUTSIDE_LOGIT) if outside is None else outside)


def input_mask(mask_model: torch.Tensor, info: ResizeInfo) -> np.ndarray:
    """A ``(256, 256)`` model-frame mask -> the input frame ``(H, W)`` bool."""
    return (postprocess_logits(mask_model.float()[None], info)[0] > 0.5).numpy()
