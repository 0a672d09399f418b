"""Simulated users for the interactive protocols.

* :class:`PreferredRaterUser` (SPA, spa.txt §4 / Table 2): the user's target is
  the majority fusion of a seeded random non-empty subset of raters
  (:func:`clinloop.data.fusion.random_subset_fusion`); given K candidates it
  picks the one with the highest Dice to its target, and accepts when no
  candidate beats the current proposal.
* Click strategies of MedUHIP (meduhip.txt §3.1): ``random`` (a clinician with
  little background knowledge clicks anywhere), ``clinician-disagreement`` (an
  assertive clinician clicks where the raters disagree), ``last-wrong`` (an
  experienced clinician corrects an error of the last prediction). Each returns
  ``((x, y), positive)`` with ``positive`` = the target's value at the click.
* :func:`largest_error_click`: the centre of the largest error region (the
  maximum of the distance transform inside the largest connected component of
  prediction XOR target), the standard click robot for click baselines and
  our first click for every method.
* :func:`tight_box`: the target's bounding box, for box-prompted LiteMedSAM.

Points are ``(x, y)`` = (column, row) in input pixels; masks are ``(H, W)`` bool.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from clinloop.metrics import dice

Click = tuple[tuple[float, float], bool]




def _check2d(*masks: np.ndarray) -> None:
    shape = np.asarray(masks[0]).shape
    for m in masks:
        m = np.asarray(m)
        if m.ndim != 2:
            raise ValueError(f"simulated users work on 2-D masks; got shape {m.shape}")
        if m.shape != shape:
            raise ValueError(f"mask shapes differ: {m.shape} vs {shape}")


def _pick(mask: np.ndarray, rng: np.random.Generator) -> tuple[float, float] | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    i = int(rng.integers(ys.size))
    return float(xs[i]), float(ys[i])


def largest_error_click(target: np.ndarray, prediction: np.ndarray | None = None) -> Click | None:
    """Centre of the largest connected error region; ``None`` when there is no error.

    The point is the pixel farthest from the region's border (Euclidean
    distance transform, zero-padded so the image edge counts as border); ties
    go to the first in row-major order. ``positive`` = target at that pixel
    (a false negative asks to add, a false positive to remove)."""
    from scipy import ndimage

    target = np.asarray(target, bool)
    pred = np.zeros_like(target) if prediction is None else np.asarray(prediction, bool)
    _check2d(target, pred)
    err = target ^ pred
    if not err.any():
        return None
    lab, n = ndimage.label(err)
    sizes = np.bincount(lab.ravel())[1:]
    region = lab == (int(np.argmax(sizes)) + 1)
    dt = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dt)), dt.shape)
    return (float(x), float(y)), bool(target[y, x])


def random_click(target: np.ndarray, prediction: np.ndarray, rng: np.random.Generator, masks=None) -> Click:
    """MedUHIP "random": a uniformly random pixel of the image."""
    _check2d(target, prediction)
    h, w = target.shape
    y, x = int(rng.integers(h)), int(rng.integers(w))
    return (float(x), float(y)), bool(target[y, x])


def clinician_disagreement_click(target: np.ndarray, prediction: np.ndarray, rng: np.random.Generator,
                                 masks: np.ndarray | None = None) -> Click:
    """MedUHIP "clinician-disagreement": a random pixel where the raters disagree
    (``masks (R, H, W)``: some but not all raters mark it); falls back to the
    prediction's errors, then to a random pixel."""
    _check2d(target, prediction)
    if masks is not None:
        m = np.asarray(masks, bool)
        s = m.sum(0)
        p = _pick((s > 0) & (s < m.shape[0]), rng)
        if p is not None:
            return p, bool(target[int(p[1]), int(p[0])])
    return last_wrong_click(target, prediction, rng)


def last_wrong_click(target: np.ndarray, prediction: np.ndarray, rng: np.random.Generator, masks=None) -> Click:
    """MedUHIP "last-wrong": a random pixel the last prediction got wrong (else random)."""
    _check2d(target, prediction)
    p = _pick(np.asarray(target, bool) ^ np.asarray(prediction, bool), rng)
    if p is None:
        return random_click(target, prediction, rng)
    return p, bool(target[int(p[1]), int(p[0])])


CLICK_STRATEGIES: dict[str, Callable[..., Click]] = {
    "random": random_click,
    "clinician-disagreement": clinician_disagreement_click,
    "last-wrong": last_wrong_click,
}


def tight_box(target: np.ndarray) -> tuple[float, float, float, float]:
    """Inclusive bounding box ``(x0, y0, x1, y1)`` of a non-empty target."""
    t = np.asarray(target, bool)
    if t.ndim != 2:
        raise ValueError(f"tight_box needs a 2-D mask; got shape {t.shape}")
    if not t.any():
        raise ValueError("tight_box: the target is empty")
    ys, xs = np.nonzero(t)
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


def random_target_point(target: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """A random foreground pixel (SPA's first r_u in training, spa.txt §3.5)."""
    p = _pick(np.asarray(target, bool), rng)
    if p is None:
        raise ValueError("random_target_point: the target is empty")
    return p


class PreferredRaterUser:
    """A user who prefers the fusion of a subset of raters.

    ``PreferredRaterUser.from_raters(masks (R,H,W), seed)`` draws the subset
    (uniform over non-empty subsets of the raters with a non-empty mask) and
    fuses it by majority; ``target`` may also be given directly."""

    def __init__(self, target: np.ndarray, raters: np.ndarray | None = None) -> None:
        self.target = np.asarray(target, bool)
        self.raters = raters

    @classmethod
    def from_raters(cls, masks: np.ndarray, seed: int, rater_valid: np.ndarray | None = None) -> "PreferredRaterUser":
        from clinloop.data.fusion import random_subset_fusion

        fused, chosen = random_subset_fusion(masks, seed=seed, rater_valid=rater_valid, require_nonempty=True)
        return cls(fused, chosen)

    def choose(self, candidates: np.ndarray, current: np.ndarray) -> int | None:
        """Index of the candidate with the highest Dice to the target, or ``None`` (accept)
        when none beats the current proposal."""
        c = np.asarray(candidates, bool)
        if c.ndim != 3 or c.shape[1:] != self.target.shape:
            raise ValueError(f"candidates must be (K, {self.target.shape[0]}, {self.target.shape[1]}); got {c.shape}")
        scores = [dice(ck, self.target) for ck in c]
        k = int(np.argmax(scores))
        return k if scores[k] > dice(current, self.target) else None
