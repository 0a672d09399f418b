"""Shared by the NIfTI volume layouts (Decathlon, BraTS): a case is one or more
image files (3-D, or channels-last 4-D) plus one integer label map; the
structure is a set of label values, merged into one rater's mask.

Opening a dataset only lists files (no voxel is read); :meth:`Dataset.header`
reads NIfTI headers only; indexing reads the volumes, checks that the label
map's geometry (shape and affine) matches the image's and that its values are
declared, and returns a :class:`~clinloop.data.sample.MultiRaterSample` with
image ``(C, D, H, W)`` float32, masks ``(1, D, H, W)``, spacing ``(dz, dy, dx)``
and the source affine in clinloop index order (see :mod:`clinloop.data.nifti`).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from clinloop.data.nifti import nifti_header, read_nifti_labels, read_nifti_volume
from clinloop.data.registry import Dataset
from clinloop.data.sample import MultiRaterSample, SampleHeader
from clinloop.errors import DataError

NIFTI_ENDINGS = (".nii.gz", ".nii")


def strip_nifti(name: str) -> str | None:
    """``"la_001.nii.gz"`` -> ``"la_001"``; None for a name that is not NIfTI."""
    low = name.lower()
    for end in NIFTI_ENDINGS:
        if low.endswith(end):
            return name[: len(name) - len(end)]
    return None


@dataclass(frozen=True)
class NiftiCase:
    case_id: str
    patient_id: str
    images: tuple[Path, ...]  # one file, or one file per channel
    label: Path | None  # None: an unlabeled case (zero raters)
    extra: dict[str, Any] = field(default_factory=dict)


def same_geometry(a: np.ndarray, b: np.ndarray) -> bool:
    """Affines equal up to float32 storage error (1e-4 relative, 1e-3 mm)."""
    return bool(np.allclose(a, b, rtol=1e-4, atol=1e-3))


def _geometry_error(what: str, shape_a, aff_a, shape_b, aff_b, path: Path) -> DataError:
    def desc(shape, aff):
        sp = np.round(np.linalg.norm(aff[:3, :3], axis=0), 4).tolist()
        return f"shape {tuple(shape)}, spacing {tuple(sp)}, origin {tuple(np.round(aff[:3, 3], 3).tolist())}"

    return DataError(f"{what} geometry does not match the image: {desc(shape_b, aff_b)} vs the image's "
                     f"{desc(shape_a, aff_a)}", path)


def _present_values(lab: np.ndarray) -> np.ndarray:
    if lab.size and lab.max() < 65536:
        return np.flatnonzero(np.bincount(lab.ravel()))
    return np.unique(lab)


class NiftiCaseDataset(Dataset):
    """Lazy cases of :class:`NiftiCase`; subclasses fill ``cases`` and the label
    policy: ``values`` (label values that make the structure; ``None`` = every
    non-zero value), ``declared`` (values a label map may hold; ``None`` = any),
    ``channels`` (expected channel count or ``None``) and ``structure``."""

    def __init__(self, root: Path, cases: Sequence[NiftiCase], *, values: Sequence[int] | None,
                 declared: Sequence[int] | None, structure: str | None, channels: int | None = None,
                 modality: str = "", declared_in: str = "the label names"):
        self.path = root
        self.cases = list(cases)
        if not self.cases:
            raise DataError("no cases found", root)
        ids = [c.case_id for c in self.cases]
        dup = sorted(c for c, n in Counter(ids).items() if n > 1)
        if dup:
            raise DataError(f"case id(s) listed twice: {', '.join(dup[:5])}", root)
        self.values = None if values is None else sorted(int(v) for v in values)
        self.declared = None if declared is None else sorted(int(v) for v in declared)
        self.declared_in = declared_in
        self.structure = structure
        self.channels = channels
        self.modality = modality
        super().__init__(ids, [c.patient_id for c in self.cases])

    # ------------------------------------------------------------------ load
    def _provenance(self, case: NiftiCase) -> dict[str, Any]:
        out = {"path": str(case.images[0]), "format": self.format, "images": [str(p) for p in case.images],
               "label": None if case.label is None else str(case.label), "modality": self.modality,
               "label_values": self.values}
        out.update(case.extra)
        return out

    def _image(self, case: NiftiCase) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
        parts = []
        for p in case.images:
            img, spacing, affine, _ = read_nifti_volume(p)
            if parts and (img.shape[1:] != parts[0][0].shape[1:] or not same_geometry(parts[0][2], affine)):
                raise _geometry_error("channel file", parts[0][0].shape[1:], parts[0][2], img.shape[1:], affine, p)
            parts.append((img, spacing, affine))
        image = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
        if self.channels is not None and image.shape[0] != self.channels:
            raise DataError(f"image has {image.shape[0]} channel(s) (shape {image.shape}) but "
                            f"{self.channels} are declared", case.images[0])
        return image, parts[0][1], parts[0][2]

    def _declared(self, case: NiftiCase) -> Sequence[int] | None:
        return self.declared

    def _load(self, i: int) -> MultiRaterSample:
        case = self.cases[i]
        image, spacing, affine = self._image(case)
        spatial = image.shape[1:]
        if case.label is None:
            masks = np.zeros((0, *spatial), dtype=bool)
        else:
            lab, _, laff = read_nifti_labels(case.label)
            if lab.shape != spatial or not same_geometry(affine, laff):
                raise _geometry_error("label map", spatial, affine, lab.shape, laff, case.label)
            declared = self._declared(case)
            if declared is not None:
                extra = sorted(set(_present_values(lab).tolist()) - set(declared))
                if extra:
                    raise DataError(f"label map holds value(s) {extra} not declared in {self.declared_in} "
                                    f"(declared: {list(declared)})", case.label)
            masks = (lab > 0 if self.values is None else np.isin(lab, self.values))[None]
        return MultiRaterSample(
            image=image, masks=masks, case_id=case.case_id, spacing=spacing, affine=affine,
            rater_ids=["0"] if case.label is not None else [], patient_id=case.patient_id,
            structure=self.structure, provenance=self._provenance(case))

    def _header(self, i: int) -> SampleHeader:
        case = self.cases[i]
        heads = [nifti_header(p) for p in case.images]
        c = sum(h["shape"][0] for h in heads)
        return SampleHeader(case_id=case.case_id, patient_id=case.patient_id, shape=(c, *heads[0]["shape"][1:]),
                            spacing=heads[0]["spacing"], affine=heads[0]["affine"],
                            n_raters=int(case.label is not None), structure=self.structure,
                            provenance=self._provenance(case))
