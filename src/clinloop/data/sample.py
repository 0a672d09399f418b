"""The multi-rater sample: one image and every rater's mask, moved together.

Axis conventions (used everywhere in clinloop):

* ``image``: float32, channels first, ``(C, H, W)`` in 2-D or ``(C, D, H, W)`` in
  3-D. Intensities are kept as read (HU for CT, 0..255 for photos); models
  normalise them themselves.
* ``masks``: bool, ``(R, H, W)`` or ``(R, D, H, W)``, one per rater, same spatial
  shape as the image. ``R`` may be 0 for an unlabeled image.
* ``spacing``: physical size of one pixel/voxel along each *spatial* axis, in the
  same order as the array axes (mm where known, 1.0 otherwise).
* ``affine``: 4x4 voxel-index -> world (RAS, as nibabel) matrix, or ``None``. In
  2-D the affine (when known) maps (row, col, 0) indices.
* ``rater_valid``: bool ``(R,)``; False marks a rater whose mask is *missing*
  (e.g. RIGA's unrecoverable outlines), which is different from an empty mask.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from clinloop.errors import DataError


def _as_bool_masks(masks: np.ndarray, where: str) -> np.ndarray:
    m = np.asarray(masks)
    if m.dtype == bool:
        return m
    if m.size and not np.isin(np.unique(m), (0, 1)).all():
        vals = np.unique(m)
        shown = ", ".join(str(v) for v in vals[:6]) + (" ..." if vals.size > 6 else "")
        raise DataError(f"rater masks must be binary (0/1), found values {shown}", where)
    return m.astype(bool)


@dataclass
class MultiRaterSample:
    """An image with all its rater masks; see the module docstring for axes."""

    image: np.ndarray
    masks: np.ndarray
    case_id: str = "case"
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = None
    rater_valid: np.ndarray | None = None
    rater_ids: list[str] | None = None
    patient_id: str | None = None
    structure: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        where = str(self.provenance.get("path", self.case_id))
        img = np.asarray(self.image)
        if img.ndim not in (3, 4):
            raise DataError(
                f"image must be channels-first (C,H,W) or (C,D,H,W), got shape {img.shape}", where
            )
        if img.size == 0 or 0 in img.shape:
            raise DataError(f"image is empty (shape {img.shape})", where)
        img = img.astype(np.float32, copy=False)
        if not np.isfinite(img).all():
            n = int((~np.isfinite(img)).sum())
            raise DataError(f"image has {n} NaN/Inf intensities", where)
        self.image = img
        spatial = img.shape[1:]
        m = np.asarray(self.masks)
        if m.ndim == len(spatial) and m.size:  # a single mask: one rater
            m = m[None]
        if m.size == 0:
            m = np.zeros((0, *spatial), dtype=bool)
        m = _as_bool_masks(m, where)
        if m.shape[1:] != spatial:
            raise DataError(
                f"rater masks have spatial shape {m.shape[1:]} but the image has {spatial}", where
            )
        self.masks = m
        r = m.shape[0]
        if self.spacing is None:
            self.spacing = (1.0,) * len(spatial)
        self.spacing = tuple(float(s) for s in self.spacing)
        if len(self.spacing) != len(spatial) or min(self.spacing) <= 0:
            raise DataError(f"spacing {self.spacing} does not fit spatial shape {spatial}", where)
        if self.affine is not None:
            self.affine = np.asarray(self.affine, dtype=np.float64)
            if self.affine.shape != (4, 4):
                raise DataError(f"affine must be 4x4, got {self.affine.shape}", where)
        if self.rater_valid is None:
            self.rater_valid = np.ones(r, dtype=bool)
        self.rater_valid = np.asarray(self.rater_valid, dtype=bool)
        if self.rater_valid.shape != (r,):
            raise DataError(f"rater_valid has shape {self.rater_valid.shape}, expected ({r},)", where)
        if self.rater_ids is None:
            self.rater_ids = [str(i) for i in range(r)]
        if len(self.rater_ids) != r:
            raise DataError(f"{len(self.rater_ids)} rater ids for {r} masks", where)
        if self.patient_id is None:
            self.patient_id = self.case_id

    # ----------------------------------------------------------------- views
    @property
    def spatial_ndim(self) -> int:
        return self.image.ndim - 1

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.image.shape[1:])

    @property
    def n_channels(self) -> int:
        return self.image.shape[0]

    @property
    def n_raters(self) -> int:
        return self.masks.shape[0]

    @property
    def valid_masks(self) -> np.ndarray:
        """Masks of the valid raters only, ``(R_valid, *spatial)`` bool."""
        return self.masks[self.rater_valid]

    def require_raters(self) -> "MultiRaterSample":
        """Raise :class:`DataError` unless at least one valid rater mask exists."""
        if not self.rater_valid.any():
            raise DataError("no rater masks (zero valid raters)", self.provenance.get("path", self.case_id))
        return self

    # ------------------------------------------------------ spatial transforms
    def map_spatial(
        self,
        image_fn: Callable[[np.ndarray], np.ndarray],
        mask_fn: Callable[[np.ndarray], np.ndarray] | None = None,
        spacing: Sequence[float] | None = None,
        affine: np.ndarray | None | str = "keep",
    ) -> "MultiRaterSample":
        """Apply one spatial transform to every image channel and every rater.

        ``image_fn`` / ``mask_fn`` take and return a single spatial array; the
        mask function defaults to the image function followed by ``> 0.5``.
        """
        mask_fn = mask_fn or (lambda a: image_fn(a.astype(np.float32)) > 0.5)
        img = np.stack([image_fn(c) for c in self.image])
        if self.n_raters:
            masks = np.stack([mask_fn(m) for m in self.masks]).astype(bool)
        else:
            masks = np.zeros((0, *img.shape[1:]), dtype=bool)
        return replace(
            self,
            image=img,
            masks=masks,
            spacing=tuple(spacing) if spacing is not None else self.spacing,
            affine=self.affine if isinstance(affine, str) else affine,
            rater_valid=self.rater_valid.copy(),
            rater_ids=list(self.rater_ids),
            provenance=dict(self.provenance),
        )

    def crop(self, slices: Sequence[slice]) -> "MultiRaterSample":
        """Crop all arrays with one slice per spatial axis (step 1). The affine's
        origin moves so that world coordinates are unchanged."""
        slices = tuple(slices)
        if len(slices) != self.spatial_ndim:
            raise ValueError(f"need {self.spatial_ndim} slices, got {len(slices)}")
        starts = [s.indices(n)[0] for s, n in zip(slices, self.spatial_shape)]
        aff = None
        if self.affine is not None:
            aff = self.affine.copy()
            shift = np.zeros(4)
            shift[: len(starts)] = starts
            aff[:3, 3] = (self.affine @ np.append(shift[:3], 1.0))[:3]
        return self.map_spatial(lambda a: a[slices], lambda a: a[slices], affine=aff)

    def flip(self, axis: int) -> "MultiRaterSample":
        """Flip along spatial ``axis`` (0-based over spatial axes)."""
        aff = None
        if self.affine is not None:
            aff = self.affine.copy()
            n = self.spatial_shape[axis]
            aff[:3, 3] += self.affine[:3, axis] * (n - 1)
            aff[:3, axis] *= -1
        return self.map_spatial(lambda a: np.flip(a, axis).copy(), lambda a: np.flip(a, axis).copy(), affine=aff)

    def resize(self, shape: Sequence[int], order: int = 1) -> "MultiRaterSample":
        """Resample to a new spatial ``shape``: image with spline ``order``
        (1 = linear), masks with nearest neighbour. Spacing scales accordingly;
        the affine's columns scale too."""
        from skimage.transform import resize as sk_resize

        shape = tuple(int(s) for s in shape)
        if len(shape) != self.spatial_ndim or min(shape) < 1:
            raise ValueError(f"resize shape {shape} does not fit {self.spatial_ndim}-D sample")
        factors = [o / n for o, n in zip(self.spatial_shape, shape)]
        spacing = tuple(s * f for s, f in zip(self.spacing, factors))
        aff = None
        if self.affine is not None:
            aff = self.affine.copy()
            for ax, f in enumerate(factors):
                aff[:3, ax] *= f
        return self.map_spatial(
            lambda a: sk_resize(a, shape, order=order, preserve_range=True, anti_aliasing=False).astype(np.float32),
            lambda a: sk_resize(a, shape, order=0, preserve_range=True, anti_aliasing=False).astype(bool),
            spacing=spacing,
            affine=aff,
        )

    def summary(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "patient_id": self.patient_id,
            "shape": list(self.image.shape),
            "spacing": list(self.spacing),
            "n_raters": self.n_raters,
            "n_valid_raters": int(self.rater_valid.sum()),
            "structure": self.structure,
        }

    def header(self) -> "SampleHeader":
        """This sample's geometry and ids as a :class:`SampleHeader`."""
        return SampleHeader(case_id=self.case_id, patient_id=self.patient_id, shape=tuple(self.image.shape),
                            spacing=self.spacing, affine=self.affine, n_raters=self.n_raters,
                            structure=self.structure, provenance=dict(self.provenance))


@dataclass(frozen=True)
class SampleHeader:
    """What a dataset knows about a case without reading its voxels (see
    :meth:`clinloop.data.registry.Dataset.header`): ``shape`` is the image's
    ``(C, H, W)`` / ``(C, D, H, W)``, ``spacing`` and ``affine`` as in
    :class:`MultiRaterSample`, ``n_raters`` the number of masks it will have."""

    case_id: str
    patient_id: str | None
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    affine: np.ndarray | None = None
    n_raters: int = 0
    structure: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[1:])

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape[1:]))
