"""A stand-in for a volumetric SPA model (``start_volume``) for the server's
volume tests: fast, deterministic, countable by hand.

A positive click at ``(x, y, z)`` gives, on slice ``t``, the disc of radius
``r_t = 5 + offset - |t - z|`` around ``(x, y)`` wherever ``r_t >= 2`` (so 7
slices, z-3 .. z+3, before any choice), reported slice by slice to
``progress`` (a :class:`SliceResult`) in the
order SPA visits them (the anchor, then up, then down). Candidate ``k`` of 3
is the same with ``offset + k - 1``; ``choose(k)`` keeps that offset. A
negative click shrinks the radius by one everywhere."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from clinloop.interaction.proposal import Proposal


@dataclass
class SliceResult:
    """What a volumetric SPA session's ``progress`` receives (same fields as SPA's ``SliceResult``)."""

    axis: int
    index: int
    mask: np.ndarray
    probability: np.ndarray
    done: int


def discs(shape, x, y, z, r0) -> np.ndarray:
    d, h, w = shape
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros(shape, bool)
    for t in range(d):
        r = r0 - abs(t - z)
        if r >= 2:
            out[t] = (yy - y) ** 2 + (xx - x) ** 2 <= r * r
    return out


class StubVolumeState:
    def __init__(self, image, config, progress, delay=0.0):
        self.shape, self.config, self.progress, self.delay = tuple(image.shape[1:]), config, progress, delay
        self.at, self.offset = None, 0

    def _proposal(self) -> Proposal:
        x, y, z = self.at
        r0 = 5 + self.offset
        mask = discs(self.shape, x, y, z, r0)
        order = [z] + list(range(z + 1, self.shape[0])) + list(range(z - 1, -1, -1))
        done = 0
        for t in order:
            if mask[t].any() and self.progress is not None:
                time.sleep(self.delay)  # the browser test's clicks last long enough to be polled
                done += 1
                self.progress(SliceResult(0, t, mask[t], mask[t].astype(np.float32), done))
        cands = np.stack([discs(self.shape, x, y, z, r0 + k - 1) for k in range(3)])
        prob = mask.astype(np.float32)
        return Proposal(mask=mask, probability=prob, uncertainty=np.zeros_like(prob), candidates=cands,
                        extra={"anchor": z, "axis": 0, "n_slices": int(mask.any(axis=(1, 2)).sum())})

    def click(self, point, positive, axis=None):
        x, y, z = (int(round(v)) for v in point)
        if positive:
            self.at = (x, y, z)
        elif self.at is not None:
            self.offset -= 1
        if self.at is None:
            self.at = (x, y, z)
        return self._proposal()

    def choose(self, k):
        self.offset += int(k) - 1
        return self._proposal()

    def hint(self, points):
        for p, pos in points:
            out = self.click(p, pos)
        return out

    def profile(self):
        return {"method": "stub3d", "offset": self.offset}


class StubVolumeModel:
    """``spatial_ndims`` (2,) like SPA, plus ``start_volume``."""

    name = "stub3d"
    spatial_ndims = (2,)

    def __init__(self, delay: float = 0.0):
        self.delay = delay  # seconds per slice
        self.configs = []  # the VolumeConfig of every volume state started

    def start(self, image, *, seed=0, profile=None):
        raise ValueError("the stub segments volumes only")

    def start_volume(self, image, *, seed=0, profile=None, config=None, spacing=None, cache=None, progress=None):
        self.configs.append(config)
        return StubVolumeState(image, config, progress, self.delay)
