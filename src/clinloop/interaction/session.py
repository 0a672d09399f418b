"""The interactive session: one clinician, one image, one model.

``Session`` is the stateful object every front end drives (CLI demo, simulated
users, the web server). It validates input, keeps a replayable history, and
delegates the actual work to the model's *state* object::

    s = Session(model, image, seed=0)       # model.start() computes and caches the embedding
    p = s.click((x, y), positive=True)      # -> Proposal
    p = s.box((x0, y0, x1, y1))              # or a box as the first interaction (SPA; z appended on volumes)
    p = s.choose(k)                          # SPA: the user picks candidate k
    p = s.hint([((x, y), True), ...])        # MECCA: several clicks at once
    mask = s.accept()

Coordinates are in input-image pixels: ``(x, y)`` = (column, row) in 2-D and
``(x, y, z)`` = (column, row, slice) in 3-D, floats allowed, origin at the
centre of the first pixel.

A model plugs in by implementing :class:`InteractiveModel` (``start``) and
returning an object with the methods of :class:`ModelState`. Optional actions a
model does not support raise ``ValueError`` with a clear message.

Images: a 2-D array is a grey image; a 3-D array whose last axis has 3 or 4
entries is an RGB(A) image (alpha dropped); any other 3-D array is a volume
``(D, H, W)`` (only for models that accept 3-D); a
:class:`~clinloop.data.sample.MultiRaterSample` gives its own channels-first
image. Everything returned is at the input's spatial size.

Volumes with SPA/MedUHIP (models with ``start_volume``): ``Session(model,
volume)`` follows the clicked structure through the slices
(:mod:`clinloop.models.spa.volume`); ``volume_config`` (a
:class:`~clinloop.interaction.propagation.VolumeConfig`: axis, spacing, max_voxels,
stop rule) and ``progress`` (called with each finished slice) apply there, and
``click((x, y, z), axis=0|1|2)`` propagates along another axis.
"""
from __future__ import annotations

import time
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from clinloop.interaction.proposal import Proposal

Point = Sequence[float]


@runtime_checkable
class ModelState(Protocol):
    def click(self, point: Point, positive: bool) -> Proposal: ...

    def choose(self, k: int) -> Proposal: ...

    def hint(self, points: Sequence[tuple[Point, bool]]) -> Proposal: ...

    def profile(self) -> dict[str, Any]: ...


@runtime_checkable
class InteractiveModel(Protocol):
    name: str
    spatial_ndims: tuple[int, ...]  # (2,), (3,) or (2, 3)

    def start(self, image: np.ndarray, *, seed: int, profile: dict[str, Any] | None) -> ModelState: ...


def as_channels_first(image: Any, spatial_ndims: Sequence[int] = (2, 3)) -> np.ndarray:
    """Normalise a user image to float32 channels-first ``(C, *spatial)``.

    Raises ``ValueError`` for 1-D / 5-D+ arrays, empty arrays, NaN/Inf, and 3-D
    volumes given to a 2-D-only model."""
    from clinloop.data.sample import MultiRaterSample

    if isinstance(image, MultiRaterSample):
        arr = image.image
    else:
        if hasattr(image, "detach"):  # torch tensor
            image = image.detach().cpu().numpy()
        a = np.asarray(image)
        if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise ValueError(f"image must be a numeric array, got dtype {a.dtype}")
        if a.ndim == 2:
            arr = a[None]
        elif a.ndim == 3 and a.shape[-1] in (3, 4) and 2 in spatial_ndims:
            arr = np.moveaxis(a[..., :3], -1, 0)
        elif a.ndim == 3:
            arr = a[None]
        else:
            raise ValueError(
                f"image must be 2-D (H,W), RGB (H,W,3) or a volume (D,H,W); got shape {a.shape}"
            )
    arr = np.asarray(arr, dtype=np.float32)
    if arr.size == 0 or 0 in arr.shape:
        raise ValueError(f"image is empty (shape {arr.shape})")
    if min(arr.shape[1:]) < 2:
        raise ValueError(f"image is too small (shape {arr.shape[1:]}); need at least 2 pixels per axis")
    if not np.isfinite(arr).all():
        raise ValueError(f"image has {int((~np.isfinite(arr)).sum())} NaN/Inf values")
    if arr.ndim - 1 not in spatial_ndims:
        raise ValueError(
            f"this model segments {' or '.join(f'{d}-D' for d in spatial_ndims)} images; "
            f"got a {arr.ndim - 1}-D image of shape {arr.shape[1:]}"
        )
    return arr


def structure_options(model, structure: str | None) -> dict:
    """The keyword ``model.start`` / ``start_volume`` take for ``structure`` (what the image shows):
    ``{"structure": ...}`` for models that take one (``takes_structure``: SPA with its structure tokens,
    :mod:`clinloop.models.spa.structure`, and the server's wrappers of it), else ``{}``."""
    return {"structure": str(structure)} if structure and getattr(model, "takes_structure", False) else {}


def model_structures(model) -> list[str]:
    """The structures ``model`` has learnt something of its own for (SPA's ``config.structures``: a token,
    adapters or an expert each, :mod:`clinloop.models.spa.structure`); ``[]`` for other models. Any other
    structure name is still accepted by a session: it is decoded by the shared weights."""
    return [str(s) for s in (getattr(getattr(model, "config", None), "structures", None) or [])]


class Session:
    """One interactive segmentation of one image (see the module docstring)."""

    def __init__(
        self,
        model: InteractiveModel,
        image: Any,
        seed: int = 0,
        profile: dict[str, Any] | None = None,
        volume_config: Any = None,
        progress: Any = None,
        structure: str | None = None,
    ):
        from clinloop.data.sample import MultiRaterSample

        self.model = model
        # what the image shows ("nodule", "left atrium"; default: a sample's own): a model with structure
        # tokens (clinloop.models.spa.structure) segments with that structure's token
        self.structure = structure if structure is not None else getattr(image, "structure", None)
        self.seed = int(seed)
        self.initial_profile = profile
        volumes = hasattr(model, "start_volume")
        ndims = tuple(getattr(model, "spatial_ndims", (2,)))
        self.image = as_channels_first(image, tuple(sorted({*ndims, 3})) if volumes else ndims)
        self.spacing = image.spacing if isinstance(image, MultiRaterSample) and self.image.ndim == 4 else None
        self.volume_config, self.progress = volume_config, progress
        self._slice_cache: dict = {}  # volumes: per-slice embeddings, kept across undo/replay
        self.history: list[dict[str, Any]] = []
        self.proposal: Proposal | None = None
        self.accepted: np.ndarray | None = None
        t0 = time.perf_counter()
        self._state = self._start()
        self.set_image_seconds = time.perf_counter() - t0

    def _start(self) -> ModelState:
        opts = structure_options(self.model, self.structure)
        if self.image.ndim == 4 and hasattr(self.model, "start_volume"):
            return self.model.start_volume(self.image, seed=self.seed, profile=self.initial_profile,
                                           config=self.volume_config, spacing=self.spacing,
                                           cache=self._slice_cache, progress=self.progress, **opts)
        return self.model.start(self.image, seed=self.seed, profile=self.initial_profile, **opts)

    # ----------------------------------------------------------- properties
    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.image.shape[1:])

    @property
    def iteration(self) -> int:
        return sum(1 for h in self.history if h["action"] in ("click", "box", "choose", "hint"))

    # -------------------------------------------------------------- actions
    def _check_point(self, point: Point) -> tuple[float, ...]:
        pt = tuple(float(v) for v in point)
        nd = len(self.spatial_shape)
        if len(pt) != nd:
            raise ValueError(f"a point needs {nd} coordinates ({'x, y' if nd == 2 else 'x, y, z'}), got {len(pt)}: "
                             f"{tuple(point)} for an image of shape {self.spatial_shape}")
        # (x, y[, z]) -> extent along (W, H[, D])
        extents = self.spatial_shape[::-1]
        for name, v, n in zip("xyz", pt, extents):
            if not np.isfinite(v) or v < -0.5 or v > n - 0.5:
                raise ValueError(f"click {name}={v} is outside the image (valid range -0.5 .. {n - 0.5})")
        return pt

    def _record(self, action: str, proposal: Proposal | None, **info) -> None:
        self.history.append({"action": action, **info})
        if proposal is not None:
            proposal.iteration = self.iteration
            self.proposal = proposal

    def _timed(self, fn, *args) -> Proposal:
        if hasattr(self._state, "progress"):  # volumes: the callback the session holds now
            self._state.progress = self.progress
        t0 = time.perf_counter()
        p = fn(*args)
        p.seconds = time.perf_counter() - t0
        return p

    def click(self, point: Point, positive: bool = True, axis: int | None = None) -> Proposal:
        """A click at ``point`` (``(x, y)`` or ``(x, y, z)``); positive = on the structure.
        ``axis`` (volumes only): propagate along 0 (axial), 1 (coronal) or 2 (sagittal)."""
        pt = self._check_point(point)
        self._ensure_open()
        if axis is None:
            p = self._timed(self._state.click, pt, bool(positive))
            self._record("click", p, point=list(pt), positive=bool(positive))
            return p
        if len(self.spatial_shape) != 3 or not hasattr(self._state, "anchor"):
            raise ValueError(f"axis={axis!r} applies to volumes with a volumetric model; this image has shape "
                             f"{self.spatial_shape}")
        p = self._timed(self._state.click, pt, bool(positive), axis)
        self._record("click", p, point=list(pt), positive=bool(positive), axis=int(axis))
        return p

    def box(self, box: Sequence[float]) -> Proposal:
        """A box as the **first** interaction: ``(x0, y0, x1, y1)`` in 2-D, ``(x0, y0, x1, y1, z)`` on
        slice ``z`` of a volume (propagated along axis 0 as after a click). Corners are inclusive input
        pixels, ``x0 < x1`` and ``y0 < y1``. The box replaces the first click's point prompt (SPA: the
        preference candidates follow from it as from a click). After the first interaction a box is
        refused (ValueError): correct with clicks, or undo back to the start."""
        b = tuple(float(v) for v in box)
        nd = len(self.spatial_shape)
        if len(b) != 2 + nd:
            raise ValueError(f"a box needs {2 + nd} numbers ({'x0, y0, x1, y1' + (', z' if nd == 3 else '')}), "
                             f"got {len(b)}: {tuple(box)} for an image of shape {self.spatial_shape}")
        self._ensure_open()
        if self.proposal is not None:
            raise ValueError("a box starts a segmentation: it must be the first interaction; click to correct "
                             "the mask, or undo back to the start to draw a new box")
        extents = self.spatial_shape[::-1]
        for name, v, n in zip(("x0", "y0", "x1", "y1", "z"), b, extents[:2] * 2 + extents[2:]):
            if not np.isfinite(v) or v < -0.5 or v > n - 0.5:
                raise ValueError(f"box {name}={v} is outside the image (valid range -0.5 .. {n - 0.5})")
        if not (b[0] < b[2] and b[1] < b[3]):
            raise ValueError(f"box {b[:4]} is empty: need x0 < x1 and y0 < y1")
        if nd == 3 and not b[4].is_integer():
            raise ValueError(f"box z={b[4]} must be an integer slice index")
        if not hasattr(self._state, "box"):
            raise ValueError(f"model {self.model.name!r} takes no box prompt; click instead")
        p = self._timed(self._state.box, b)
        self._record("box", p, box=list(b))
        return p

    def choose(self, k: int) -> Proposal:
        """The user picks representative candidate ``k`` (0-based) of the last proposal."""
        self._ensure_open()
        if self.proposal is None:
            raise ValueError("choose() before any click: click on the structure first")
        if self.proposal.candidates is None:
            raise ValueError(f"model {self.model.name!r} offers no candidates to choose from")
        k_n = len(self.proposal.candidates)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= int(k) < k_n:
            raise ValueError(f"candidate {k!r} out of range: choose 0 .. {k_n - 1}")
        p = self._timed(self._state.choose, int(k))
        self._record("choose", p, candidate=int(k))
        return p

    def hint(self, points: Sequence[tuple[Point, bool]]) -> Proposal:
        """Several clicks at once (MECCA's hint map): ``[((x, y), positive), ...]``."""
        self._ensure_open()
        if len(points) == 0:
            raise ValueError("hint() needs at least one point")
        pts = [(self._check_point(p), bool(pos)) for p, pos in points]
        p = self._timed(self._state.hint, pts)
        self._record("hint", p, points=[[list(p), pos] for p, pos in pts])
        return p

    def accept(self) -> np.ndarray:
        """Accept the current proposal; returns its mask (input size, bool)."""
        self._ensure_open()
        if self.proposal is None:
            raise ValueError("nothing to accept: click on the structure first")
        self.accepted = self.proposal.mask.copy()
        self._record("accept", None)
        return self.accepted

    def undo(self) -> Proposal | None:
        """Take back the last action by replaying the history without it
        (sessions are deterministic for a seed, so this is exact)."""
        if not self.history:
            raise ValueError("nothing to undo")
        keep = self.history[:-1]
        self._state = self._start()
        self.history, self.proposal, self.accepted = [], None, None
        self._apply(keep)
        return self.proposal

    def profile(self) -> dict[str, Any]:
        """The user's adapted preference (e.g. SPA's GMM), JSON-serialisable,
        to carry to the next image: ``Session(model, img, profile=s.profile())``."""
        return self._state.profile()

    # -------------------------------------------------------------- replay
    def _ensure_open(self) -> None:
        if self.accepted is not None:
            raise ValueError("this session was accepted; start a new Session (or undo) to edit again")

    def _apply(self, history: Sequence[dict[str, Any]]) -> None:
        for h in history:
            a = h["action"]
            if a == "click":
                self.click(h["point"], h["positive"], h.get("axis"))
            elif a == "box":
                self.box(h["box"])
            elif a == "choose":
                self.choose(h["candidate"])
            elif a == "hint":
                self.hint([(p, pos) for p, pos in h["points"]])
            elif a == "accept":
                self.accept()
            else:
                raise ValueError(f"unknown action {a!r} in history")

    @classmethod
    def replay(cls, model: InteractiveModel, image: Any, history: Sequence[dict[str, Any]], seed: int = 0,
               profile: dict[str, Any] | None = None, volume_config: Any = None,
               structure: str | None = None) -> "Session":
        """Rebuild a session from its recorded history (same model, image, seed and structure → same result)."""
        s = cls(model, image, seed=seed, profile=profile, volume_config=volume_config, structure=structure)
        s._apply(history)
        return s
