"""Compact JSON encodings of images and proposals for the browser.

Everything the UI draws is sent as small base64 PNGs, already coloured, so
the browser only composites them on a canvas:

* ``mask``: the proposal as an RGBA overlay (outline opaque, interior faint);
* ``uncertainty``: a heatmap (our own 5-stop "inferno"-like ramp), alpha
  growing with the value, scaled to the slice's maximum;
* each candidate ``k``: its +/− difference to the proposal (spa.txt §3.4) in
  two colours — green = added (in the candidate, not in the proposal),
  magenta = removed (in the proposal, not in the candidate);
* ``advice``: MECCA's regions as dashed-looking amber outlines;
* ``confidence`` (only when the model gives one, MECCA): the action-confidence
  map C(s, a) on a fixed 0 … 1 scale in a second ramp (viridis-like), every
  level equally opaque (low confidence is what matters), transparent where no
  agent acted (:func:`confidence_png`).

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
    Image.fromarray(np.ascontiguousarray(rgba)).save(buf, format="PNG", compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def indexed_png_b64(index: np.ndarray, palette: np.ndarray) -> str:
    """A palette PNG: ``index`` ``(H, W)`` uint8 into ``palette`` ``(n, 4)`` RGBA
    (alpha through the tRNS chunk). One byte per pixel instead of four, so
    encoding is ~4x cheaper than RGBA — it dominates the server's overhead."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(index, dtype=np.uint8), mode="P")
    pal = np.asarray(palette, dtype=np.uint8)
    im.putpalette(pal[:, :3].tobytes())
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1, transparency=pal[:, 3].tobytes())
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _outline(m: np.ndarray) -> np.ndarray:
    """Pixels of ``m`` with a 4-neighbour outside ``m`` (the mask's boundary)."""
    p = np.pad(m, 1, constant_values=False)
    inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~inner


def mask_index(m: np.ndarray) -> np.ndarray:
    """Bool ``(H, W)`` -> palette indices: 0 outside, 1 interior, 2 outline."""
    m = np.asarray(m, dtype=bool)
    idx = m.astype(np.uint8)
    idx[_outline(m)] = 2
    return idx


def mask_png(m: np.ndarray, rgb=MASK_RGB, fill_alpha: int = 70, edge_alpha: int = 255) -> str:
    """A mask overlay: faint interior, opaque outline (base64 PNG)."""
    pal = np.array([[0, 0, 0, 0], [*rgb, fill_alpha], [*rgb, edge_alpha]])
    return indexed_png_b64(mask_index(m), pal)


def mask_overlay(m: np.ndarray, rgb=MASK_RGB, fill_alpha: int = 70, edge_alpha: int = 255) -> np.ndarray:
    """Bool ``(H, W)`` -> RGBA overlay (what :func:`mask_png` encodes)."""
    pal = np.array([[0, 0, 0, 0], [*rgb, fill_alpha], [*rgb, edge_alpha]], dtype=np.uint8)
    return pal[mask_index(m)]


def difference_png(add: np.ndarray, rem: np.ndarray, alpha: int = 230) -> str:
    """The +/− difference of one candidate to the proposal: ``add`` green, ``rem`` magenta."""
    idx = np.zeros(add.shape, dtype=np.uint8)
    idx[add], idx[rem] = 1, 2
    return indexed_png_b64(idx, np.array([[0, 0, 0, 0], [*ADD_RGB, alpha], [*REM_RGB, alpha]]))


HEAT_LEVELS = 32


def _ramp_rgb(ramp: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """``levels`` colours linearly interpolated along ``ramp`` (``(k, 3)``) and their positions t in 0..1."""
    t = np.arange(levels, dtype=np.float32) / (levels - 1)
    x = t * (len(ramp) - 1)
    i = np.minimum(x.astype(np.int64), len(ramp) - 2)
    f = (x - i)[:, None]
    return ramp[i] * (1 - f) + ramp[i + 1] * f, t


def _heat_palette() -> np.ndarray:
    rgb, t = _ramp_rgb(_RAMP, HEAT_LEVELS)
    a = (np.sqrt(t) * 200)[:, None]  # sqrt: faint uncertainty stays visible; 0 is transparent
    return np.concatenate([rgb, a], axis=1).astype(np.uint8)


_HEAT_PAL = _heat_palette()


def heatmap_index(u: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """Float ``(H, W)`` >= 0 -> palette levels 0..31 of ``u / vmax`` (0 transparent)."""
    u = np.nan_to_num(np.asarray(u, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    top = float(vmax) if vmax is not None else float(u.max())
    if top <= 0:
        return np.zeros(u.shape, dtype=np.uint8)
    return np.rint(np.clip(u * ((HEAT_LEVELS - 1) / top), 0, HEAT_LEVELS - 1)).astype(np.uint8)


def heatmap_png(u: np.ndarray, vmax: float | None = None) -> str:
    """An uncertainty heatmap (inferno-like ramp, alpha growing with the value)."""
    return indexed_png_b64(heatmap_index(u, vmax), _HEAT_PAL)


def heatmap(u: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """RGBA version of :func:`heatmap_png`."""
    return _HEAT_PAL[heatmap_index(u, vmax)]


# viridis-like ramp for the action confidence: index 0 = no value (transparent), 1..32 = 0..1
_CONF_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32)
CONF_LEVELS = 32
CONF_ALPHA = 170


def _conf_palette() -> np.ndarray:
    rgb, _ = _ramp_rgb(_CONF_RAMP, CONF_LEVELS)
    pal = np.concatenate([rgb, np.full((CONF_LEVELS, 1), CONF_ALPHA, np.float32)], axis=1)
    return np.concatenate([np.zeros((1, 4), np.float32), pal]).astype(np.uint8)


_CONF_PAL = _conf_palette()


def confidence_index(c: np.ndarray) -> np.ndarray:
    """Float ``(H, W)`` in [0, 1] (NaN: no value) -> palette indices: 0 for NaN, else
    ``1 + rint(c * 31)`` (so a client reads the value back as ``(index - 1) / 31``)."""
    c = np.asarray(c, dtype=np.float32)
    idx = 1 + np.rint(np.clip(np.nan_to_num(c, nan=0.0), 0, 1) * (CONF_LEVELS - 1)).astype(np.uint8)
    idx[np.isnan(c)] = 0
    return idx


def confidence_png(c: np.ndarray) -> str:
    """The action-confidence map as a palette PNG (:func:`confidence_index`)."""
    return indexed_png_b64(confidence_index(c), _CONF_PAL)


def _slice(a: np.ndarray, z: int | None) -> np.ndarray:
    return a if a.ndim == 2 else a[int(z or 0)]


def encode_proposal(p: Proposal, z: int | None = None) -> dict[str, Any]:
    """A proposal (2-D, or slice ``z`` of a 3-D one) as JSON-ready overlays.

    ``candidates[k]`` holds the +/− overlay (``diff``) and the pixel counts
    ``added``/``removed``/``area`` over the whole array (all slices); for a 3-D
    proposal also ``slice_area``, candidate ``k``'s pixels on slice ``z`` (the
    candidates are 3-D: they can be compared on any slice). Each ``advice`` region
    has ``mask`` (slice ``z``) and ``area``; in 3-D also ``slice_area`` and
    ``slices`` (``[first, last]`` slice it spans). Optional keys: ``confidence``
    (:func:`confidence_png` of slice ``z``) with ``confidence_range`` (min, max on
    that slice; None when no agent acted there), and ``roi`` (a MECCA session's
    region of interest, ``[first, stop]`` per array axis)."""
    m = np.asarray(p.mask, dtype=bool)
    out: dict[str, Any] = {
        "iteration": int(p.iteration),
        "seconds": round(float(p.seconds), 4),
        "z": None if m.ndim == 2 else int(z or 0),
        "area": int(m.sum()),
        "mask": mask_png(_slice(m, z)),
        "uncertainty": heatmap_png(_slice(p.uncertainty, z), vmax=float(np.max(p.uncertainty)) or None),
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
                "diff": difference_png(_slice(add, z), _slice(rem, z)),
                "added": int(add.sum()), "removed": int(rem.sum()), "area": int(p.candidates[k].sum()),
            })
            if m.ndim == 3:
                out["candidates"][-1]["slice_area"] = int(np.count_nonzero(p.candidates[k][int(z or 0)]))
    for r in p.advice or []:
        r = np.asarray(r, dtype=bool)
        out["advice"].append({"mask": mask_png(_slice(r, z), rgb=ADVICE_RGB, fill_alpha=40),
                              "area": int(r.sum())})
        if m.ndim == 3:  # a 3-D region: its voxels on slice z, and the slices it spans (to go there)
            zs = np.flatnonzero(r.any(axis=(1, 2)))
            out["advice"][-1].update(slice_area=int(np.count_nonzero(r[int(z or 0)])),
                                     slices=[int(zs[0]), int(zs[-1])] if len(zs) else [])
    if p.confidence is not None:  # MECCA's C(s, a): an optional layer, only when the model has one
        c = _slice(np.asarray(p.confidence, dtype=np.float32), z)
        out["confidence"] = confidence_png(c)
        ok = c[~np.isnan(c)]
        out["confidence_range"] = [round(float(ok.min()), 4), round(float(ok.max()), 4)] if ok.size else None
    if "roi" in p.extra:  # the region of interest a MECCA session runs on ([first, stop] per array axis)
        out["roi"] = [[int(a), int(b)] for a, b in p.extra["roi"]]
    return out


def encode_image_slice(image: np.ndarray, z: int | None = None,
                       window: tuple[float, float] | None = None) -> dict[str, Any]:
    """Channels-first image ``(C, H, W)`` / ``(C, D, H, W)`` -> the slice to draw.

    Grey: ``{"kind": "grey", "data": base64 float32 (H*W), "lo", "hi"}`` with
    lo/hi a default window (``window``, else the 0.5/99.5 percentiles of the
    whole image or volume); colour: ``{"kind":
    "rgb", "png": ...}`` (rescaled to 0..255 when values leave that range)."""
    sl = image if image.ndim == 3 else image[:, int(z or 0)]
    c, h, w = sl.shape
    if c == 1:
        a = np.ascontiguousarray(sl[0], dtype="<f4")
        lo, hi = window if window is not None else np.percentile(image[0], [0.5, 99.5])
        return {"kind": "grey", "width": w, "height": h, "data": base64.b64encode(a.tobytes()).decode("ascii"),
                "lo": float(lo), "hi": float(hi), "min": float(a.min()), "max": float(a.max())}
    rgb = np.moveaxis(sl[:3], 0, -1)
    lo, hi = float(image.min()), float(image.max())
    if lo < 0 or hi > 255:
        rgb = (rgb - lo) / max(hi - lo, 1e-6) * 255
    return {"kind": "rgb", "width": w, "height": h, "png": png_b64(np.clip(rgb, 0, 255).astype(np.uint8))}
