"""A MECCA session on a region of interest around the first click.

Not in the paper: mecca.txt's agents cover the image it is given, and the LIDC
models (``cfg.zoom == 1``) were trained and are evaluated on ``cfg.size`` crops
centred on the structure (:func:`clinloop.training.mecca_data.prepare`). On a
whole LIDC slice or volume (128² × D) the shipped ``mecca-lidc3d`` marks about
80 % of the voxels after one click, and its advice regions lie in the
background. A clinician gives no crop; their first click marks the structure,
so :class:`ROIState` crops ``cfg.size`` per axis around it (the same
:func:`~clinloop.models.mecca.volumes.crop_around` as training: shifted inside
the image where it fits, padded with 0 where the image is smaller) and runs an
ordinary :class:`~clinloop.models.mecca.model.MECCAState` there. Later clicks
are moved into the crop's coordinates (clicks outside it reach the hint map only
through their Gaussian tails, or not at all). Proposals come back at the input
size: mask, probability and uncertainty are 0 / False outside the region,
``confidence`` is NaN there (no agent acted), advice regions that lie wholly in
the padding (outside the image) are dropped, and ``extra["roi"]`` holds
the region as ``[[first, stop], ...]`` per axis in array order (``(z,) y, x``),
clipped to the image.

The region is fixed by the first click of the history, so undo and replay
rebuild the same session.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from clinloop.interaction.proposal import Proposal
from clinloop.models.mecca import volumes as vol
from clinloop.models.mecca.hint_state import HintOnlyState


def needs_roi(cfg, spatial: Sequence[int]) -> bool:
    """A session of this model on an image of shape ``spatial`` uses a region of interest:
    the model was trained on ``cfg.size`` crops at full resolution (``zoom == 1``) and the
    image is larger than that along some axis."""
    return cfg.zoom == 1 and cfg.size > 0 and any(int(n) > cfg.size for n in spatial)


class ROIState(HintOnlyState):
    """A MECCA session on a ``cfg.size`` region around the first click (module docstring).
    ``image`` ``(C, *spatial)``; clicks ``(x, y[, z])`` in input coordinates; ``start(crop)``
    makes the session on the ``(C, *crop)`` region (``MECCAState``)."""

    def __init__(self, cfg, image: np.ndarray, start: Callable[[np.ndarray], Any]):
        self.cfg, self.start = cfg, start
        self.image = np.asarray(image)
        self.shape = tuple(self.image.shape[1:])
        self.sizes = (int(self.cfg.size),) * len(self.shape)
        self.origin: tuple[int, ...] | None = None  # the crop's first voxel, array order
        self.inner = None

    def _begin(self, point: Sequence[float]) -> None:
        centre = [float(v) for v in point[::-1]]  # (x, y[, z]) -> array order
        self.origin = vol.crop_origin(centre, self.shape, self.sizes)
        self.inner = self.start(vol.crop_around(self.image, centre, self.sizes))

    def _local(self, point: Sequence[float]) -> tuple[float, ...]:
        return tuple(float(v) - lo for v, lo in zip(point, self.origin[::-1]))

    def _embed(self, p: Proposal) -> Proposal:
        src, dst = vol.crop_slices(self.origin, self.shape, self.sizes)

        def put(a: np.ndarray | None, fill) -> np.ndarray | None:
            if a is None:
                return None
            out = np.full(self.shape, fill, dtype=a.dtype)
            out[src] = a[dst]
            return out

        roi = [[s.start, s.stop] for s in src]
        return Proposal(mask=put(p.mask, False), probability=put(p.probability, 0), uncertainty=put(p.uncertainty, 0),
                        confidence=put(p.confidence, np.nan),
                        advice=[r for r in (put(a, False) for a in p.advice) if r.any()],
                        extra={**p.extra, "roi": roi})

    def hint(self, points: Sequence[tuple[Sequence[float], bool]]) -> Proposal:
        if self.inner is None:
            if not points:
                raise ValueError("hint() needs at least one point")
            self._begin(points[0][0])
        return self._embed(self.inner.hint([(self._local(pt), pos) for pt, pos in points]))
