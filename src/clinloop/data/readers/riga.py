"""RIGA fundus photos with optic disc and cup outlines, one ``.npz``
(format name ``"riga"``; LEXU's dataset).

Layout (``riga_binrushed2_512crop.npz``: RIGA BinRushed2, 47 photos, 6
ophthalmologists, masks recovered from the drawn outlines and cropped to
512x512 around the disc)::

    image     uint8 (N, H, W, 3)     RGB photo, channels last
    disc      0/1   (N, R, H, W)     one disc mask per rater
    cup       0/1   (N, R, H, W)     one cup mask per rater
    rater_ok  bool  (N, R)           False: that outline could not be recovered
    case_id   int   (N,)             optional; row number + 1 when absent

Disc and cup are **separate structures** (the cup lies inside the disc; they
are not two classes of one label map). Option ``structure``:

* ``"disc"`` or ``"cup"``: one case per photo, ``case_id = "case20"``;
* ``None`` (default): both, as separate cases ``"case20/disc"`` and
  ``"case20/cup"`` sharing ``patient_id = "case20"`` (so a split never puts a
  photo's disc in training and its cup in validation).

``rater_valid = rater_ok[i]``: an unrecoverable outline is *missing*, not an
empty mask (its array is all zero in the file; consumers must skip it).
In the development file 7 of 282 rater masks are missing, in cases 20 (raters
3, 4, 5) and 23 (raters 1, 3, 5, 6), the same ones for disc and cup.
Image: ``(3, H, W)`` float32 0..255; spacing unknown (1.0). RIGA does not say
whether two photos come from one patient, so each photo is its own patient.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from clinloop.data.readers._npz import SharedNpzArrays, array_cache, detect_npz, npz_headers, read_member, single_npz
from clinloop.data.registry import Dataset, register_reader
from clinloop.data.sample import MultiRaterSample
from clinloop.errors import DataError

KEYS = ("image", "disc", "cup", "rater_ok")
STRUCTURES = ("disc", "cup")


def detect_riga(path: Path) -> bool:
    """An ``.npz`` with image, disc, cup and rater_ok (or a folder whose only npz is one)."""
    return detect_npz(path, set(KEYS))


class RIGADataset(SharedNpzArrays, Dataset):
    """Lazy RIGA photos; one case per (photo, structure)."""

    format = "riga"

    def __init__(self, path: Path, structure: str | None = None):
        self.path = Path(path)
        self.name = self.path.stem
        if structure is not None and structure not in STRUCTURES:
            raise ValueError(f"RIGA structure must be 'disc', 'cup' or None, got {structure!r}")
        self.structures = (structure,) if structure else STRUCTURES
        heads = npz_headers(self.path, KEYS)
        ishape, idtype = heads["image"]
        if len(ishape) != 4 or ishape[-1] != 3 or idtype.kind not in "biuf":
            raise DataError(f"'image' must be numeric (N,H,W,3), got {idtype} {ishape}", self.path)
        n, h, w = ishape[:3]
        for key in STRUCTURES:
            mshape, _ = heads[key]
            if len(mshape) != 4 or mshape[0] != n:
                raise DataError(f"'{key}' must be (N,R,H,W) with N={n}, got shape {mshape}", self.path)
            if mshape[2:] != (h, w):
                raise DataError(f"'{key}' masks have spatial shape {mshape[2:]} but images have {(h, w)}", self.path)
            if mshape[1] == 0:
                raise DataError(f"'{key}' has zero raters (shape {mshape})", self.path)
        if heads["disc"][0][1] != heads["cup"][0][1]:
            raise DataError(f"'disc' has {heads['disc'][0][1]} raters but 'cup' has {heads['cup'][0][1]}", self.path)
        self.n_raters = heads["disc"][0][1]
        ok = read_member(self.path, "rater_ok")
        if ok.shape != (n, self.n_raters):
            raise DataError(f"'rater_ok' must have shape {(n, self.n_raters)}, got {ok.shape}", self.path)
        self.rater_ok = ok.astype(bool)
        ids = read_member(self.path, "case_id") if "case_id" in heads else np.arange(1, n + 1)
        if ids.shape != (n,):
            raise DataError(f"'case_id' must have shape ({n},), got {ids.shape}", self.path)
        names = [f"case{int(c):02d}" if np.issubdtype(ids.dtype, np.integer) else str(c) for c in ids]
        self.items = [(row, st) for row in range(n) for st in self.structures]
        cases = [names[r] if len(self.structures) == 1 else f"{names[r]}/{st}" for r, st in self.items]
        self._cache = array_cache(self.path)
        super().__init__(cases, [names[r] for r, _ in self.items])

    def _array(self, key: str) -> np.ndarray:
        # read once per file, shared (npz members cannot be memory-mapped)
        return self._cache.get(key, lambda: read_member(self.path, key))


    def _load(self, i: int) -> MultiRaterSample:
        row, st = self.items[i]
        img = np.moveaxis(self._array("image")[row], -1, 0).astype(np.float32)  # (3,H,W)
        return MultiRaterSample(
            image=img,
            masks=self._array(st)[row],
            case_id=self.case_ids[i],
            patient_id=self.patient_ids[i],
            rater_ids=[f"rater{k + 1}" for k in range(self.n_raters)],
            rater_valid=self.rater_ok[row].copy(),
            structure=st,
            provenance={"path": str(self.path), "format": "riga", "row": row},
        )


@register_reader("riga", detect_riga, "RIGA fundus disc/cup (.npz: image, disc, cup, rater_ok); option structure")
def read_riga(path: str | Path, structure: str | None = None) -> RIGADataset:
    """Open a RIGA npz; ``structure`` in {"disc", "cup", None (both)}."""
    return RIGADataset(single_npz(Path(path), detect_riga, "RIGA"), structure=structure)
