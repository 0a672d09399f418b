"""LIDC-IDRI nodule crops in one ``.npz`` (format name ``"lidc"``).

Layout (``lidc_crops_dev.npz`` in the development data; the 128x128 crops of
Kohl et al.'s Probabilistic U-Net preprocessing, used by SPA and MedUHIP)::

    image    uint8/float (N, H, W)      CT crop (intensities as stored)
    masks    bool or 0/1 (N, R, H, W)   one mask per radiologist (R = 4)
    patient  str (N,)                   e.g. "LIDC-IDRI-0003"
    nodule   int (N,)                   nodule number within the patient
    slice    int (N,)                   slice number within the nodule

Options of :func:`read_lidc`:

* ``volumes=False`` (default): one 2-D case per row, ``case_id =
  "<patient>/n<nodule>/s<slice>"``, image ``(1, H, W)``, masks ``(R, H, W)``.
* ``volumes=True``: the slices of one (patient, nodule), ordered by ``slice``,
  stacked into a ``(1, D, H, W)`` volume with ``(R, D, H, W)`` masks. Slice
  numbers must be consecutive to be stacked: a gap (a missing slice number)
  splits the nodule into separate volumes, ``"<patient>/n<nodule>/s<a>-<b>"``;
  a nodule without gaps is just ``"<patient>/n<nodule>"``. (The development
  file has no gaps: 1,044 volumes.) Duplicate slice numbers are a DataError.

``patient_id`` is always the patient, so splits never leak a patient. Rater
ids are ``rater0..rater{R-1}``: in LIDC the order of the four masks is *not*
the same radiologist across nodules, so rater identity is positional only. An
all-zero mask means that radiologist drew nothing there (valid, empty), so
``rater_valid`` is all True. Spacing is unknown in the crops: 1.0 per axis.

The arrays are read lazily on first access to a case and cached (npz members
cannot be memory-mapped), shared by all datasets open on the same file; masks
are kept bit-packed (50 MB instead of 400 MB for the development file). Reading
them takes ~2 s on one idle core.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from clinloop.data.readers._npz import SharedNpzArrays, array_cache, detect_npz, npz_headers, read_bool_packed, read_member, single_npz, unpack
from clinloop.data.registry import Dataset, register_reader
from clinloop.data.sample import MultiRaterSample
from clinloop.errors import DataError

KEYS = ("image", "masks", "patient", "nodule", "slice")


def detect_lidc(path: Path) -> bool:
    """An ``.npz`` whose members include image, masks, patient, nodule and slice
    (or a folder whose only ``.npz`` is one)."""
    return detect_npz(path, set(KEYS))


class LIDCDataset(SharedNpzArrays, Dataset):
    """Lazy LIDC crops; see the module docstring for case ids and options."""

    format = "lidc"

    def __init__(self, path: Path, volumes: bool = False):
        self.path = Path(path)
        self.name = self.path.stem
        self.volumes = bool(volumes)
        heads = npz_headers(self.path, KEYS)
        ishape, idtype = heads["image"]
        mshape, mdtype = heads["masks"]
        if len(ishape) != 3:
            raise DataError(f"'image' must be (N,H,W), got shape {ishape}", self.path)
        if len(mshape) != 4:
            raise DataError(f"'masks' must be (N,R,H,W), got shape {mshape}", self.path)
        if idtype.kind not in "biuf":
            raise DataError(f"'image' must be numeric, got dtype {idtype}", self.path)
        if mshape[0] != ishape[0]:
            raise DataError(f"'masks' has {mshape[0]} rows but 'image' has {ishape[0]}", self.path)
        if mshape[2:] != ishape[1:]:
            raise DataError(f"masks have spatial shape {mshape[2:]} but images have {ishape[1:]}", self.path)
        if mshape[1] == 0:
            raise DataError("'masks' has zero raters (shape (N,0,H,W))", self.path)
        n = ishape[0]
        self.n_raters = mshape[1]
        patient = read_member(self.path, "patient").astype(str)
        nodule = read_member(self.path, "nodule")
        slc = read_member(self.path, "slice")
        for key, a in (("patient", patient), ("nodule", nodule), ("slice", slc)):
            if a.shape != (n,):
                raise DataError(f"'{key}' must have shape ({n},), got {a.shape}", self.path)
        self.patient, self.nodule, self.slice = patient, nodule.astype(np.int64), slc.astype(np.int64)
        self._cache = array_cache(self.path)

        if not self.volumes:
            # rows: one index each
            self.rows = [np.array([i]) for i in range(n)]
            cases = [f"{p}/n{k}/s{s}" for p, k, s in zip(patient, self.nodule, self.slice)]
            pats = [str(p) for p in patient]
        else:
            self.rows, cases, pats = self._runs()
        super().__init__(cases, pats)

    def _runs(self):
        """Group rows by (patient, nodule), order by slice, split at gaps."""
        order = np.lexsort((self.slice, self.nodule, self.patient))
        groups: dict[tuple[str, int], list[int]] = {}
        for i in order:
            groups.setdefault((str(self.patient[i]), int(self.nodule[i])), []).append(int(i))
        rows, cases, pats = [], [], []
        for (p, k), idx in groups.items():
            s = self.slice[idx]
            if np.any(np.diff(s) == 0):
                dup = int(s[np.flatnonzero(np.diff(s) == 0)[0]])
                raise DataError(f"patient {p} nodule {k} has slice {dup} more than once", self.path)
            cuts = np.flatnonzero(np.diff(s) != 1) + 1
            parts = np.split(np.asarray(idx), cuts)
            for part in parts:
                a, b = int(self.slice[part[0]]), int(self.slice[part[-1]])
                rows.append(part)
                cases.append(f"{p}/n{k}" if len(parts) == 1 else f"{p}/n{k}/s{a}-{b}")
                pats.append(p)
        return rows, cases, pats

    def arrays(self) -> dict[str, np.ndarray]:
        """``{"image": (N,H,W), "masks": bit-packed (N,R,H,ceil(W/8)), "width": W}``,
        read once per file and shared with other datasets on it."""
        image = self._cache.get("image", lambda: read_member(self.path, "image"))
        packed, width = self._cache.get("masks", lambda: read_bool_packed(self.path, "masks"))
        return {"image": image, "masks": packed, "width": np.int64(width)}


    def _load(self, i: int) -> MultiRaterSample:
        a = self.arrays()
        rows = self.rows[i]
        img = a["image"][rows].astype(np.float32)  # (D,H,W)
        masks = unpack(a["masks"][rows], int(a["width"]))  # (D,R,H,W)
        if self.volumes:
            image, m = img[None], np.moveaxis(masks, 1, 0)  # (1,D,H,W), (R,D,H,W)
        else:
            image, m = img, masks[0]  # (1,H,W), (R,H,W)
        r = self.n_raters
        return MultiRaterSample(
            image=image,
            masks=m,
            case_id=self.case_ids[i],
            patient_id=self.patient_ids[i],
            rater_ids=[f"rater{k}" for k in range(r)],
            rater_valid=np.ones(r, dtype=bool),
            structure="nodule",
            provenance={"path": str(self.path), "format": "lidc", "rows": [int(x) for x in rows],
                        "slices": [int(self.slice[x]) for x in rows]},
        )


@register_reader("lidc", detect_lidc, "LIDC-IDRI nodule crops (.npz: image, masks, patient, nodule, slice)")
def read_lidc(path: str | Path, volumes: bool = False) -> LIDCDataset:
    """Open a LIDC crops npz; ``volumes=True`` stacks each nodule's slices."""
    path = single_npz(Path(path), detect_lidc, "LIDC")
    return LIDCDataset(path, volumes=volumes)

