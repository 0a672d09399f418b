"""Compact JSON encodings of images and proposals for the browser.

Everything the UI draws is sent as small base64 PNGs, already coloured, so
the browser only composites them on a canvas:

* ``mask``: the proposal as an RGBA overlay (outline opaque, interior faint);
* ``uncertainty``: a heatmap (our own 5-stop "inferno"-like ramp), alpha
  growing with the value, scaled to the slice's maximum;
* each candidate ``k``: its +/− difference to the proposal (spa.txt §3.4) in
  two colours — green = added (in the candidate, not in the proposal),
  magenta = removed (in the proposal, not in the candidate);
* ``advice``: MECCA's regions as dashed-looking amber outlines.

Binary RGBA PNGs of a few colours compress to a few hundred bytes. 3-D
arrays are sent one slice at a time (``z``). Grey images go as raw float32
(base64, little-endian) so the browser can apply window/level itself;
colour images as an 8-bit RGB PNG.
"""
from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from clinloop.interaction.proposal import Proposal

MASK_RGB = (0, 200, 255)  # proposal: cyan
ADD_RGB = (40, 220, 90)  # candidate "+" (added pixels): green
REM_RGB = (235, 50, 170)  # candidate "−" (removed pixels): magenta
ADVICE_RGB = (255, 190, 0)  # MECCA advice regions: amber

# inferno-like ramp: value in [0,1] -> RGB (5 stops, linear between them)
_RAMP = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32)


def png_b64(rgba: np.ndarray) -> str:
    """``(H, W, 4)`` / ``(H, W, 3)`` / ``(H, W)`` uint8 -> base64 PNG string."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba)).save(buf, format="PNG", optimize=False, compress_level=6)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _outline(m: np.ndarray) -> np.ndarray:
    """Pixels of ``m`` with a 4-neighbour outside ``m`` (the mask's boundary)."""
    p = np.pad(m, 1, constant_values=False)
    inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~inner


def mask_overlay(m: np.ndarray, rgb=MASK_RGB, fill_alpha: int = 70, edge_alpha: int = 255) -> np.ndarray:
    """Bool ``(H, W)`` -> RGBA overlay: faint interior, opaque outline."""
    m = np.asarray(m, dtype=bool)
    out = np.zeros((*m.shape, 4), dtype=np.uint8)
    out[m, :3] = rgb
    out[m, 3] = fill_alpha
    out[_outline(m), 3] = edge_alpha
    return out


def difference_overlay(add: np.ndarray, rem: np.ndarray, alpha: int = 230) -> np.ndarray:
    """The +/− difference of one candidate to the proposal: ``add`` green, ``rem`` magenta."""
    out = np.zeros((*add.shape, 4), dtype=np.uint8)
    out[add, :3], out[add, 3] = ADD_RGB, alpha
    out[rem, :3], out[rem, 3] = REM_RGB, alpha
    return out


def heatmap(u: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """Float ``(H, W)`` >= 0 -> RGBA heatmap; 0 is transparent, ``vmax`` opaque-ish."""
    u = np.nan_to_num(np.asarray(u, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    top = float(vmax) if vmax is not None else float(u.max())
    t = np.clip(u / top, 0, 1) if top > 0 else np.zeros_like(u)
    x = t * (len(_RAMP) - 1)
    i = np.minimum(x.astype(np.int64), len(_RAMP) - 2)
    f = (x - i)[..., None]
    rgb = _RAMP[i] * (1 - f) + _RAMP[i + 1] * f
    out = np.empty((*u.shape, 4), dtype=np.uint8)
    out[..., :3] = rgb.astype(np.uint8)
    out[..., 3] = (np.sqrt(t) * 200).astype(np.uint8)  # sqrt: faint uncertainty stays visible
    return out


def _slice(a: np.ndarray, z: int | None) -> np.ndarray:
    return a if a.ndim == 2 else a[int(z or 0)]


def encode_proposal(p: Proposal, z: int | None = None) -> dict[str, Any]:
    """A proposal (2-D, or slice ``z`` of a 3-D one) as JSON-ready overlays.

    ``candidates[k]`` holds the +/− overlay (``diff``), the candidate's own
    outline (``mask``) and pixel counts ``added``/``removed`` over the whole
    array (all slices)."""
    m = np.asarray(p.mask, dtype=bool)
    out: dict[str, Any] = {
        "iteration": int(p.iteration),
        "seconds": round(float(p.seconds), 4),
        "z": None if m.ndim == 2 else int(z or 0),
        "area": int(m.sum()),
        "mask": png_b64(mask_overlay(_slice(m, z))),
        "uncertainty": png_b64(heatmap(_slice(p.uncertainty, z), vmax=float(np.max(p.uncertainty)) or None)),
        "uncertainty_max": round(float(np.max(p.uncertainty)), 4),
        "candidates": [],
        "advice": [],
    }
    diffs = p.candidate_differences()
    if diffs is not None:
        for k in range(diffs.shape[0]):
            add, rem = diffs[k, 0], diffs[k, 1]
            out["candidates"].append({
                "index": k,
                "diff": png_b64(difference_overlay(_slice(add, z), _slice(rem, z))),
                "mask": png_b64(mask_overlay(_slice(p.candidates[k], z), rgb=(255, 255, 255), fill_alpha=0)),
                "added": int(add.sum()), "removed": int(rem.sum()), "area": int(p.candidates[k].sum()),
            })
    for r in p.advice or []:
        r = np.asarray(r, dtype=bool)
        out["advice"].append({"mask": png_b64(mask_overlay(_slice(r, z), rgb=ADVICE_RGB, fill_alpha=40)),
                              "area": int(r.sum())})
    return out


def encode_image_slice(image: np.ndarray, z: int | None = None) -> dict[str, Any]:
    """Channels-first image ``(C, H, W)`` / ``(C, D, H, W)`` -> the slice to draw.

    Grey: ``{"kind": "grey", "data": base64 float32 (H*W), "lo", "hi"}`` with
    lo/hi the 0.5/99.5 percentiles (a default window); colour: ``{"kind":
    "rgb", "png": ...}`` (rescaled to 0..255 when values leave that range)."""
    sl = image if image.ndim == 3 else image[:, int(z or 0)]
    c, h, w = sl.shape
    if c == 1:
        a = np.ascontiguousarray(sl[0], dtype="<f4")
        lo, hi = np.percentile(image[0] if image.ndim == 3 else image[0, int(z or 0)], [0.5, 99.5])
        return {"kind": "grey", "width": w, "height": h, "data": base64.b64encode(a.tobytes()).decode("ascii"),
                "lo": float(lo), "hi": float(hi), "min": float(a.min()), "max": float(a.max())}
    rgb = np.moveaxis(sl[:3], 0, -1)
    lo, hi = float(image.min()), float(image.max())
    if lo < 0 or hi > 255:
        rgb = (rgb - lo) / max(hi - lo, 1e-6) * 255
    return {"kind": "rgb", "width": w, "height": h, "png": png_b64(np.clip(rgb, 0, 255).astype(np.uint8))}
