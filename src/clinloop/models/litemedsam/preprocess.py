"""Input handling for LiteMedSAM: image -> model input, prompts -> model frame,
low-res logits -> masks at the input size.

Frames (all coordinates are ``(x, y)`` = (column, row)):

* **input frame**: pixels of the original image, ``H x W``; integer coordinates
  are pixel centres (``(0, 0)`` is the centre of the top-left pixel).
* **model frame**: the 256x256 encoder input. The image is resized so its
  longest side is 256 -- ``s = 256 / max(H, W)``, resized size
  ``(h, w) = (round(H s), round(W s))`` -- and placed at the top-left; the
  bottom/right padding is zero. The mask decoder's low-res logits are
  256x256 in this same frame.

Mapping input -> model (``s_x = w / W``, ``s_y = h / H``, equal up to rounding):

* points map pixel centre to pixel centre: ``x' = (x + 0.5) s_x - 0.5``
  (so a square 128² -> 256² input sends pixel 10 to 20.5, the centre of the
  2x2 block 20..21);
* boxes ``(x0, y0, x1, y1)`` with *inclusive* pixel corners map edge to edge:
  ``x0' = x0 s_x``, ``x1' = (x1 + 1) s_x - 1`` (128² pixels 10..15 -> 20..31).

With ``s = 1`` (a 256² input) both are the identity.

Intensities: after resizing (bilinear, ``align_corners=False``, no
antialiasing -- as the reference), values are min-max scaled to [0, 1] over
the resized image (all channels together); a constant image becomes all
zeros. Grey images are repeated to 3 channels. This reproduces the reference
``input_j`` of litemedsam_reference.npz exactly for square inputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMG_SIZE = 256


@dataclass(frozen=True)
class ResizeInfo:
    """How an ``original_size`` = (H, W) image sits in the model frame: resized
    to ``resized_size`` = (h, w) at the top-left of a ``target`` x ``target`` canvas."""

    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    target: int = IMG_SIZE

    @property
    def scale_xy(self) -> tuple[float, float]:
        return self.resized_size[1] / self.original_size[1], self.resized_size[0] / self.original_size[0]


def resize_info(original_size: tuple[int, int], target: int = IMG_SIZE) -> ResizeInfo:
    """Longest side -> ``target``; the other side rounded (at least 1)."""
    h, w = int(original_size[0]), int(original_size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {original_size}")
    s = target / max(h, w)
    return ResizeInfo((h, w), (max(1, int(round(h * s))), max(1, int(round(w * s)))), target)


def to_chw(image) -> torch.Tensor:
    """Accept (H, W) grey, (H, W, 3) RGB (channel-last), or (1|3, H, W)
    channel-first (e.g. ``MultiRaterSample.image``); return float32 ``(C, H, W)``."""
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.number)):
        raise ValueError(f"image must be a numeric array; got dtype {arr.dtype}")
    if arr.ndim == 2:
        chw = arr[None]
    elif arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] not in (1, 3):
        chw = np.moveaxis(arr[..., :3], -1, 0)  # drop alpha
    elif arr.ndim == 3 and arr.shape[0] in (1, 3):
        chw = arr
    elif arr.ndim == 3 and arr.shape[-1] == 1:
        chw = np.moveaxis(arr, -1, 0)
    else:
        raise ValueError(f"image must be (H, W), (H, W, 3) or (1|3, H, W); got shape {arr.shape}")
    if min(chw.shape[1:]) < 1:
        raise ValueError(f"image has an empty axis: shape {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32))
    if not torch.isfinite(t).all():
        raise ValueError(f"image of shape {arr.shape} contains NaN or infinite values")
    return t


def preprocess(image, target: int = IMG_SIZE, value_range: tuple[float, float] | None = None
               ) -> tuple[torch.Tensor, ResizeInfo]:
    """Image of any size/modality -> ``(3, target, target)`` float32 in [0, 1]
    and its :class:`ResizeInfo`. See the module docstring for the exact steps.
    ``value_range = (lo, hi)`` maps [lo, hi] to [0, 1] (clipped) instead of the image's
    own min-max (a crop prepared as it looks in the whole image)."""
    x = to_chw(image)
    info = resize_info(tuple(x.shape[1:]), target)
    x = F.interpolate(x[None], size=info.resized_size, mode="bilinear", align_corners=False)[0]
    if value_range is not None:
        lo, hi = float(value_range[0]), float(value_range[1])
        if not hi > lo:
            raise ValueError(f"value_range must have hi > lo, got {value_range}")
        x = ((x - lo) / (hi - lo)).clamp(0, 1)
    else:
        lo, hi = x.min(), x.max()
        x = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    out = x.new_zeros((3, target, target))
    out[:, : info.resized_size[0], : info.resized_size[1]] = x
    return out, info


def points_to_model(points, info: ResizeInfo) -> np.ndarray:
    """``(N, 2)`` (x, y) input-frame points -> model frame (centre to centre)."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points must be (N, 2) as (x, y); got shape {p.shape}")
    sx, sy = info.scale_xy
    return np.stack([(p[:, 0] + 0.5) * sx - 0.5, (p[:, 1] + 0.5) * sy - 0.5], axis=1)


def box_to_model(box, info: ResizeInfo) -> np.ndarray:
    """``(4,)`` inclusive input-frame box x0, y0, x1, y1 -> model frame (edge to edge)."""
    b = np.asarray(box, dtype=np.float64)
    if b.shape != (4,):
        raise ValueError(f"box must be (4,) as x0, y0, x1, y1; got shape {b.shape}")
    if b[2] < b[0] or b[3] < b[1]:
        raise ValueError(f"box {b.tolist()} has x1 < x0 or y1 < y0")
    sx, sy = info.scale_xy
    return np.array([b[0] * sx, b[1] * sy, (b[2] + 1) * sx - 1, (b[3] + 1) * sy - 1])


def postprocess_logits(lowres_logits: torch.Tensor, original_size: tuple[int, int] | ResizeInfo) -> torch.Tensor:
    """Low-res logits ``(..., 256, 256)`` in the model frame -> ``(..., H, W)`` in
    the input frame: crop the padding, then bilinear (``align_corners=False``)
    resize to the input size. Threshold at 0 for a mask."""
    info = original_size if isinstance(original_size, ResizeInfo) else resize_info(original_size)
    if lowres_logits.shape[-2:] != (info.target, info.target):
        raise ValueError(f"low-res logits must end in ({info.target}, {info.target}); got {tuple(lowres_logits.shape)}")
    lead = lowres_logits.shape[:-2]
    x = lowres_logits[..., : info.resized_size[0], : info.resized_size[1]].reshape(-1, 1, *info.resized_size)
    x = F.interpolate(x.float(), size=info.original_size, mode="bilinear", align_corners=False)
    return x.reshape(*lead, *info.original_size)


def mask_to_model(mask, info: ResizeInfo) -> torch.Tensor:
    """Input-frame mask or logits ``(H, W)`` -> ``(256, 256)`` model frame
    (bilinear for floats, nearest for booleans; zero padding)."""
    m = torch.as_tensor(np.asarray(mask))
    if tuple(m.shape) != info.original_size:
        raise ValueError(f"mask shape {tuple(m.shape)} does not match the image size {info.original_size}")
    mode = "nearest" if m.dtype == torch.bool else "bilinear"
    kw = {} if mode == "nearest" else {"align_corners": False}
    r = F.interpolate(m.float()[None, None], size=info.resized_size, mode=mode, **kw)[0, 0]
    out = r.new_zeros((info.target, info.target))
    out[: info.resized_size[0], : info.resized_size[1]] = r
    return out
