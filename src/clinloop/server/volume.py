"""Run a 2-D interactive model on volumes, one slice at a time.

:class:`SliceWiseModel` wraps an ``InteractiveModel`` whose ``spatial_ndims``
is ``(2,)`` so the workstation can open 3-D cases (CT/MRI) with it: a click
``(x, y, z)`` goes to a 2-D state for slice ``z`` (created on first use with
the seed ``(seed * 100_003 + z) mod 2**43`` and the preference profile the user had at
that moment), and the returned 3-D proposal holds every worked slice's current
mask. Candidates are 3-D too: the current volume mask with slice ``z``
replaced by the 2-D candidate, so their +/− differences live on slice ``z``.
``choose`` and ``hint`` act on the last clicked slice (``Proposal.extra["z"]``).

Models that segment volumes natively (``3 in spatial_ndims``) are passed
through unchanged; models with ``start_volume`` (SPA/MedUHIP: one click
follows the structure through the slices, :mod:`clinloop.models.spa.volume`)
run as :class:`VolumeModel`, whose volume sessions report each finished slice
to a :class:`ProgressBoard` (``GET /api/sessions/{sid}/progress``). Everything is deterministic for a seed, so
``Session.replay``/``undo`` rebuild a volume session exactly.
"""
from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from clinloop.interaction.proposal import Proposal


class SerialStart:
    """Serialise ``model.start`` (models keep an unlocked embedding LRU); the
    per-image ``click``/``choose`` steps of different sessions still run in parallel."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.spatial_ndims = tuple(inner.spatial_ndims)
        self.takes_structure = bool(getattr(inner, "takes_structure", False))  # (clinloop.models.spa.structure)
        self._lock = threading.Lock()

    def start(self, image: np.ndarray, *, seed: int = 0, profile: dict[str, Any] | None = None, **options):
        with self._lock:
            return self.inner.start(image, seed=seed, profile=profile, **options)


class SliceWiseModel:
    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.spatial_ndims = (2, 3)

    def start(self, image: np.ndarray, *, seed: int = 0, profile: dict[str, Any] | None = None):
        if image.ndim == 3:  # (C, H, W): a plain 2-D image
            return self.inner.start(image, seed=seed, profile=profile)
        return SliceWiseState(self.inner, image, seed, profile)


class VolumeModel(SerialStart):
    """A model with ``start_volume`` (SPA/MedUHIP): 2-D images as before, volumes
    as native 3-D sessions (``Session`` calls ``start_volume``; serialised like ``start``)."""

    def __init__(self, inner):
        super().__init__(inner)
        self.spatial_ndims = tuple(sorted({*self.spatial_ndims, 3}))

    def start_volume(self, image: np.ndarray, *, seed: int = 0, profile: dict[str, Any] | None = None, **options):
        with self._lock:
            return self.inner.start_volume(image, seed=seed, profile=profile, **options)


def lift(inner) -> Any:
    """The model the server drives: 3-D-capable, with a serialised ``start``."""
    if hasattr(inner, "start_volume"):
        return VolumeModel(inner)
    m = SerialStart(inner)
    return m if 3 in m.spatial_ndims else SliceWiseModel(m)


def volume_config(inner, meta: dict[str, Any], limits) -> Any:
    """The ``VolumeConfig`` of a volume session of model ``inner`` (``None`` for
    models without ``start_volume``): the case's voxel spacing ``(s_z, s_y, s_x)``
    from its stored meta and the server's ``max_voxels``. Everything in it comes
    from the stored image and the server's flags, so a replay after a restart or
    an eviction builds the same config (the history records the click's axis)."""
    if not hasattr(inner, "start_volume"):
        return None
    from clinloop.interaction.propagation import VolumeConfig

    sp = meta.get("spacing")
    spacing = tuple(float(v) for v in sp) if sp is not None and len(sp) == 3 else None
    return VolumeConfig(spacing=spacing, max_voxels=int(limits.max_voxels))


class ProgressBoard:
    """Slices finished by each session's running (or last) volume action.

    The model step runs inside the session's lock and a model worker
    (:class:`~clinloop.server.live.ModelGate`); the board is a plain dict
    behind its own lock, so ``GET .../progress`` answers *while* the click
    runs without waiting for either. Per session: ``running``, ``done``
    (slices finished), ``total`` (slices along the propagation axis: an upper
    bound, the structure usually ends sooner), ``axis``, ``slice_areas``
    (mask pixels per slice index finished so far, 0 elsewhere), ``run`` (a
    number that changes with every action) and, in the order they finished,
    the slices' masks themselves (:meth:`slices`: the page draws them as they
    arrive, before the 3-D result is complete)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, dict[str, Any]] = {}
        # sid -> [(axis, index, packed bits of the (rows, cols) mask)] of the last action (bit-packed: 1/8 the memory)
        self._masks: dict[str, list[tuple[int, int, np.ndarray]]] = {}
        self._shapes: dict[str, tuple] = {}
        self._count = 0

    def begin(self, sid: str, shape: Sequence[int]) -> Any:
        """Start counting an action on a ``(D, H, W)`` volume; returns the ``progress`` callback."""
        with self._lock:
            self._count += 1
            run = {"running": True, "done": 0, "total": int(shape[0]), "axis": 0, "slice_areas": [0] * int(shape[0]),
                   "run": self._count}
            self._runs[sid] = run
            masks = self._masks[sid] = []
            d, h, w = (int(v) for v in shape)
            self._shapes[sid] = ((h, w), (d, w), (d, h))  # plane (rows, cols) per axis

        def progress(r) -> None:  # a SliceResult of clinloop.models.spa.volume (axis, index, mask, done)
            m = np.asarray(r.mask, dtype=bool)
            packed = np.packbits(m)  # a copy: the step may reuse its arrays
            with self._lock:
                if r.axis != run["axis"]:
                    run["axis"], run["total"] = int(r.axis), int(shape[r.axis])
                    run["slice_areas"] = [0] * int(shape[r.axis])
                run["slice_areas"][int(r.index)] = int(np.count_nonzero(m))
                run["done"] = int(r.done)
                masks.append((int(r.axis), int(r.index), packed))
        return progress

    def end(self, sid: str) -> None:
        with self._lock:
            if sid in self._runs:
                self._runs[sid]["running"] = False

    def get(self, sid: str, since: int | None = None) -> dict[str, Any]:
        """The run's counts; with ``since``, also ``slices``: the ``(axis, index, (rows, cols) bool
        mask)`` of the slices it finished, from the ``since``-th on, in the order they finished
        (read under the same lock as the counts, so both belong to one ``run``)."""
        with self._lock:
            run = self._runs.get(sid)
            if run is None:
                out = {"running": False, "done": 0, "total": None, "axis": None, "slice_areas": [], "run": 0}
            else:
                out = {**run, "slice_areas": list(run["slice_areas"])}
            got = list(self._masks.get(sid, [])[max(0, int(since or 0)):]) if run is not None else []
            planes = self._shapes.get(sid)
        if since is not None:
            out["slices"] = [(a, i, np.unpackbits(b, count=planes[a][0] * planes[a][1]).astype(bool).reshape(planes[a]))
                             for a, i, b in got]
        return out

    def forget(self, sid: str) -> None:
        with self._lock:
            self._runs.pop(sid, None)
            self._masks.pop(sid, None)
            self._shapes.pop(sid, None)


SLICE_SEED_MOD = 2 ** 43  # models derive per-step seeds (SPA: seed * 1_000_003 + step): keep those < 2**63


def slice_seed(seed: int, z: int) -> int:
    """The 2-D seed of slice ``z``: ``(seed * 100_003 + z) mod 2**43`` (unchanged for
    every seed below ~8.8e7, so stored sessions replay as before)."""
    return (int(seed) * 100_003 + int(z)) % SLICE_SEED_MOD


class SliceWiseState:
    """Per-slice 2-D states of one volume ``(C, D, H, W)``."""

    def __init__(self, inner, image: np.ndarray, seed: int, profile: dict[str, Any] | None):
        self.inner, self.image, self.seed = inner, image, int(seed)
        self.states: dict[int, Any] = {}
        self.active: int | None = None
        self.carry = profile
        sp = image.shape[1:]
        self.mask = np.zeros(sp, dtype=bool)
        self.prob = np.zeros(sp, dtype=np.float32)
        self.unc = np.zeros(sp, dtype=np.float32)
        self.conf: np.ndarray | None = None  # MECCA's action confidence, NaN on slices not worked yet

    def _slice_state(self, z: int):
        if z not in self.states:
            self.states[z] = self.inner.start(np.ascontiguousarray(self.image[:, z]),
                                              seed=slice_seed(self.seed, z), profile=self.carry)
        return self.states[z]

    def _z(self, point: Sequence[float]) -> int:
        if len(point) != 3:
            raise ValueError(f"a click on a volume needs (x, y, z); got {tuple(point)}")
        return int(np.clip(round(float(point[2])), 0, self.image.shape[1] - 1))

    def _lift(self, z: int, p: Proposal) -> Proposal:
        self.active = z
        try:
            self.carry = self.states[z].profile()
        except ValueError:
            pass
        self.mask[z], self.prob[z], self.unc[z] = p.mask, p.probability, p.uncertainty
        if p.confidence is not None:
            if self.conf is None:
                self.conf = np.full(self.mask.shape, np.nan, dtype=np.float32)
            self.conf[z] = p.confidence
        cands = None
        if p.candidates is not None:
            cands = np.repeat(self.mask[None], len(p.candidates), axis=0)
            cands[:, z] = p.candidates
        advice = []
        for r in p.advice or []:
            a = np.zeros_like(self.mask)
            a[z] = r
            advice.append(a)
        return Proposal(mask=self.mask.copy(), probability=self.prob.copy(), uncertainty=self.unc.copy(),
                        candidates=cands, advice=advice, confidence=None if self.conf is None else self.conf.copy(),
                        extra={**p.extra, "z": z, **({"roi": [[z, z + 1], *p.extra["roi"]]} if "roi" in p.extra else {})})

    def click(self, point, positive: bool) -> Proposal:
        z = self._z(point)
        return self._lift(z, self._slice_state(z).click(tuple(point[:2]), positive))

    def choose(self, k: int) -> Proposal:
        if self.active is None:
            raise ValueError("choose() before any click: click on the structure first")
        return self._lift(self.active, self.states[self.active].choose(k))

    def hint(self, points) -> Proposal:
        zs = {self._z(p) for p, _ in points}
        if len(zs) != 1:
            raise ValueError(f"a hint on a volume must lie on one slice; got slices {sorted(zs)}")
        z = zs.pop()
        return self._lift(z, self._slice_state(z).hint([(tuple(p[:2]), pos) for p, pos in points]))

    def profile(self) -> dict[str, Any]:
        if self.active is None:
            return self.carry or {}
        return self.states[self.active].profile()
