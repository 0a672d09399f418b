"""User clicks as hard constraints on a sampled proposal.

A corrective click says "this pixel is (not) the structure". Interactive
segmentation since graph cuts (Boykov & Jolly, ICCV 2001: seeds are hard
constraints) guarantees that: whatever the model proposes, a seed ends on its
side. :func:`honour_clicks` does it for a proposal that comes with the sample
probability p (SPA: the share of the N sampled masks that contain a pixel), and
lets the samples say how far the correction reaches:

* include click at c with p(c) > 0: add the connected component of
  ``{p >= p(c)}`` that contains c -- the pixels the samples hold at least as
  likely as the clicked one, connected to it; with p(c) = 0 (no sample has it)
  the disc of ``radius`` pixels around c;
* exclude click at c with p(c) < 1: remove the connected component of
  ``{p <= p(c)} ∩ mask`` that contains c (the proposal's pixels no more likely
  than the clicked one); with p(c) = 1 the disc.

Either region is cut to the disc of radius ``max(radius, reach * r_eq)``
around c, r_eq = sqrt(area / pi) the equivalent radius of the mask before the
click: the correction stays local (an include click at one spot of the border
does not add the generous samples' band all round the structure; an exclude
click in a confident core removes a hole there, not every pixel as likely as
the clicked one). The disc of ``radius`` is always applied too, so the clicked
pixel is on its side. Clicks are applied in order: a later click wins where two
disagree. Nothing changes where the mask already agrees with a click.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def honour_clicks(mask: np.ndarray, probability: np.ndarray, clicks: Sequence[tuple[tuple[float, float], bool]],
                  radius: float = 1.0, reach: float = 0.25) -> np.ndarray:
    """``mask (H, W)`` bool with each click of ``clicks`` (``((x, y), positive)``, pixel
    coordinates) made true; ``probability (H, W)`` in [0, 1] (module docstring). Returns a new array."""
    from scipy import ndimage

    out = np.array(mask, dtype=bool, copy=True)
    prob = np.asarray(probability, dtype=np.float32)
    if out.ndim != 2 or prob.shape != out.shape:
        raise ValueError(f"honour_clicks needs a 2-D mask and a probability of its shape; got {out.shape} and {prob.shape}")
    h, w = out.shape
    for (x, y), positive in clicks:
        xi, yi = int(round(float(x))), int(round(float(y)))
        if not (0 <= xi < w and 0 <= yi < h) or out[yi, xi] == bool(positive):
            continue
        disc = _disc((h, w), xi, yi, radius)
        local = _disc((h, w), xi, yi, max(radius, reach * float(np.sqrt(out.sum() / np.pi))))
        pc = float(prob[yi, xi])
        if positive:
            region = ((prob >= pc) & local) if pc > 0 else disc
            lab, _ = ndimage.label(region | disc)
            out |= lab == lab[yi, xi]
        else:
            region = ((prob <= pc) & out & local) if pc < 1 else disc
            lab, _ = ndimage.label(region | disc)
            out &= ~(lab == lab[yi, xi])
    return out


def _disc(shape: tuple[int, int], x: int, y: int, r: float) -> np.ndarray:
    """``shape`` bool, true within Euclidean distance ``r`` of pixel (x, y)."""
    out = np.zeros(shape, bool)
    k = int(np.floor(r))
    y0, y1, x0, x1 = max(0, y - k), min(shape[0], y + k + 1), max(0, x - k), min(shape[1], x + k + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = (yy - y) ** 2 + (xx - x) ** 2 <= r * r
    return out
