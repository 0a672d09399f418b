"""BU-BIL phase-contrast microscopy PNG folders (format name ``"bubil"``;
Gurari et al., WACV 2015)::

    BU-BIL_Dataset1/RawImages/B01.png
    BU-BIL_Dataset1/ExpertsAnnotations/Person1_Amira/seg_B01.png   (10 folders)
    BU-BIL_Dataset1/GoldStandard/seg_B01.png                       (not a rater)
    BU-BIL_Dataset6/ExpertAnnotations/...                          (other spelling)

``root`` may be one ``BU-BIL_Dataset<N>`` folder (case ids ``"B01"``) or a
folder holding several (case ids ``"BU-BIL_Dataset1/B01"``). Raters are the
``Person<p>_<tool>`` folders (5 experts x Amira/ImageJ = 10), ``rater_ids`` like
``"Person1_Amira"``, in the same order for every case. File names are matched
case-insensitively (``Seg_B18.png`` and ``seg_tpre01.png`` occur). A missing
annotation file gives ``rater_valid`` False for that rater (mask all False).
``GoldStandard`` is not loaded.

Option ``group``: ``"image"`` (default) makes each image its own patient;
``"dataset"`` makes the ``BU-BIL_Dataset<N>`` folder the patient, so a split
never separates frames of one sequence (Dataset6's TPre01..35 follow one moving
cell, judging by the masks; consecutive frames are near-duplicates).

What the files really hold (checked on the development copy) and how it is
handled:

* masks: cell = dark (0), background = white (255); stored as greyscale or as
  RGB with three equal channels (the first channel is used; unequal channels
  are a DataError). One Dataset1 file (Person5_Amira/seg_B04) also has 3 pixels
  of value 24: values <= 32 count as cell, >= 223 as background, anything in
  between is a DataError naming the file.
* raw images: greyscale, one palette PNG (Dataset1/B02, a grey palette; read as
  its grey values). B02 and its masks are 1300x1030 while the rest of
  Dataset1 is 1024x811: sizes match per case.
* **Dataset6 raw images (~21..36 px) are crops of the 512x512 frame in which
  the masks are drawn, and the crop position is not recorded** (the masks show
  one cell moving across the frame over the TPre01..35 sequence). With
  ``size_mismatch="crop"`` (default) the masks are cropped to the raw image's
  size, centred on the centre of the bounding box of all raters' masks (the
  crops are cell-centred); this keeps >= 84% (median 100%) of every rater's mask
  on the development copy. The offset is recorded in
  ``provenance["mask_offset"]`` and ``provenance["aligned"] = "estimated"``.
  ``size_mismatch="error"`` raises a DataError instead. A mask *smaller* than
  its image is always a DataError.

Image: ``(1, H, W)`` float32 0..255; spacing unknown (1.0).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from clinloop.data.registry import Dataset, register_reader
from clinloop.data.sample import MultiRaterSample
from clinloop.errors import DataError

_ANN = ("ExpertsAnnotations", "ExpertAnnotations")
_RATER = re.compile(r"^Person(\d+)_(\w+)$", re.IGNORECASE)
_IMG_EXT = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def _ann_dir(d: Path) -> Path | None:
    for sub in d.iterdir() if d.is_dir() else ():
        if sub.is_dir() and sub.name.lower() in {a.lower() for a in _ANN}:
            return sub
    return None


def _raw_dir(d: Path) -> Path | None:
    for sub in d.iterdir() if d.is_dir() else ():
        if sub.is_dir() and sub.name.lower() == "rawimages":
            return sub
    return None


def _is_dataset(d: Path) -> bool:
    return d.is_dir() and _raw_dir(d) is not None and _ann_dir(d) is not None


def _datasets(root: Path) -> list[Path]:
    if _is_dataset(root):
        return [root]
    return sorted(d for d in root.iterdir() if d.is_dir() and _is_dataset(d)) if root.is_dir() else []


def detect_bubil(path: Path) -> bool:
    """A folder with ``RawImages/`` and ``Expert(s)Annotations/Person*_*/``, or a
    folder of such folders."""
    for d in _datasets(path):
        ann = _ann_dir(d)
        if any(_RATER.match(p.name) for p in ann.iterdir() if p.is_dir()):
            return True
    return False


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode == "P":  # palette: use its grey (or RGB) values
                im = im.convert("RGB")
            elif im.mode not in ("L", "RGB", "RGBA", "I;16", "I", "F", "1", "LA"):
                im = im.convert("RGB")
            a = np.asarray(im)
    except Exception as e:
        raise DataError(f"could not read image ({type(e).__name__}: {e})", path) from None
    if a.ndim == 3:
        if a.shape[-1] in (2, 4):  # drop alpha
            a = a[..., :-1]
        if a.shape[-1] == 3 and (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():
            a = a[..., 0]
        elif a.shape[-1] == 1:
            a = a[..., 0]
    return a


def _mask(path: Path) -> np.ndarray:
    """Cell = dark. Returns bool (H, W)."""
    a = _read_png(path)
    if a.ndim != 2:
        raise DataError("mask has different R, G, B channels; expected a black/white mask", path)
    if a.dtype == bool:
        return ~a  # 1-bit PNG: black (False) is cell
    a = a.astype(np.int64)
    mid = (a > 32) & (a < 223)
    if mid.any():
        vals = np.unique(a[mid])[:5]
        raise DataError(
            "mask must be black (cell) / white (background); found grey values "
            + ", ".join(map(str, vals)), path)
    return a <= 32


class BUBILDataset(Dataset):
    """Lazy BU-BIL cases; see the module docstring."""

    format = "bubil"

    def __init__(self, root: Path, size_mismatch: str = "crop", group: str = "image"):
        if size_mismatch not in ("crop", "error"):
            raise ValueError(f"size_mismatch must be 'crop' or 'error', got {size_mismatch!r}")
        if group not in ("image", "dataset"):
            raise ValueError(f"group must be 'image' or 'dataset', got {group!r}")
        self.size_mismatch = size_mismatch
        self.path = Path(root)
        self.name = self.path.name
        sets = _datasets(self.path)
        if not sets:
            raise DataError("not a BU-BIL folder (needs RawImages/ and ExpertsAnnotations/ or ExpertAnnotations/)", self.path)
        prefix = len(sets) > 1 or sets[0] != self.path
        # rater folders: the union over datasets, ordered by person then tool
        self.items = []
        raters: set[tuple[int, str]] = set()
        per_set = []
        for d in sets:
            ann = _ann_dir(d)
            folders = {}
            for p in ann.iterdir():
                m = _RATER.match(p.name)
                if p.is_dir() and m:
                    folders[(int(m.group(1)), m.group(2))] = {f.stem.lower(): f for f in p.iterdir() if f.is_file() and f.suffix.lower() in _IMG_EXT}
            raters |= set(folders)
            raws = sorted(f for f in _raw_dir(d).iterdir() if f.suffix.lower() in _IMG_EXT)
            per_set.append((d, folders, raws))
        if not raters:
            raise DataError("no Person<p>_<tool> annotation folders (zero raters)", self.path)
        self.raters = sorted(raters, key=lambda r: (r[0], r[1].lower()))
        self.rater_ids = [f"Person{p}_{t}" for p, t in self.raters]
        cases, pats = [], []
        for d, folders, raws in per_set:
            for raw in raws:
                key = f"seg_{raw.stem}".lower()
                files = [folders.get(r, {}).get(key) for r in self.raters]
                self.items.append((raw, files, d.name))
                cases.append(f"{d.name}/{raw.stem}" if prefix else raw.stem)
                pats.append(d.name if group == "dataset" else cases[-1])
        if not self.items:
            raise DataError("no raw images in RawImages/", self.path)
        super().__init__(cases, pats)

    def _load(self, i: int) -> MultiRaterSample:
        raw, files, dname = self.items[i]
        img = _read_png(raw).astype(np.float32)
        img = img[None] if img.ndim == 2 else np.moveaxis(img, -1, 0)  # (C,H,W)
        h, w = img.shape[1:]
        masks = [None if f is None else _mask(f) for f in files]
        present = [m for m in masks if m is not None]
        prov = {"path": str(raw), "format": "bubil", "dataset": dname,
                "masks": [None if f is None else str(f) for f in files]}
        if present:
            shapes = {m.shape for m in present}
            if len(shapes) > 1:
                raise DataError(f"the rater masks differ in size: {sorted(shapes)}", raw)
            mh, mw = present[0].shape
            if (mh, mw) != (h, w):
                bad = next(f for f in files if f is not None)
                if mh < h or mw < w or self.size_mismatch == "error":
                    raise DataError(f"mask size {(mh, mw)} does not match the image size {(h, w)} ({raw.name})", bad)
                union = np.any(present, axis=0)
                if union.any():
                    yy, xx = np.nonzero(union)
                    cy, cx = (yy.min() + yy.max()) / 2, (xx.min() + xx.max()) / 2
                else:
                    cy, cx = (mh - 1) / 2, (mw - 1) / 2
                oy = int(np.clip(round(cy - (h - 1) / 2), 0, mh - h))
                ox = int(np.clip(round(cx - (w - 1) / 2), 0, mw - w))
                masks = [None if m is None else m[oy:oy + h, ox:ox + w] for m in masks]
                prov.update(mask_offset=[oy, ox], mask_frame=[mh, mw], aligned="estimated")
        stack = np.stack([np.zeros((h, w), bool) if m is None else m for m in masks])
        return MultiRaterSample(
            image=img,
            masks=stack,
            case_id=self.case_ids[i],
            patient_id=self.patient_ids[i],
            rater_ids=list(self.rater_ids),
            rater_valid=np.array([m is not None for m in masks], dtype=bool),
            structure="cell",
            provenance=prov,
        )


@register_reader("bubil", detect_bubil, "BU-BIL microscopy PNG folders (RawImages + Expert(s)Annotations/Person*_*); options size_mismatch, group")
def read_bubil(path: str | Path, size_mismatch: str = "crop", group: str = "image") -> BUBILDataset:
    """Open a BU-BIL dataset folder (or a folder of them)."""
    return BUBILDataset(Path(path), size_mismatch=size_mismatch, group=group)
