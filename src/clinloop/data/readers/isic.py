"""ISIC "UDA2 pilot" dermoscopic-feature masks (format name ``"isic"``)::

    isic_uda2_features/index.json               [{"image": "002", "feature": "net_atyp", "rater": "Braun"}, ...]
    isic_uda2_features/UDA2_pilot_002.jpg       RGB photo
    isic_uda2_features/UDA2_pilot_002_masks.npz shape (2,) = (H, W); one uint8 array per
                                                "<feature>__<rater>" key, bit-packed along
                                                the last axis: np.unpackbits(a, axis=-1)[:, :W]

One case per (image, feature) listed in ``index.json``: ``case_id =
"UDA2_pilot_002/net_atyp"``, ``patient_id = "UDA2_pilot_002"`` (a photo's
features never straddle a split), ``structure`` = the feature name
(``net_atyp``, ``net_typ``, ``str_chrys`` in the development copy),
``rater_ids`` = the dermatologists who drew that feature, all valid. The index
lists only drawn masks, so a rater who did not mark a feature on a photo is
simply not among that case's raters (we do not guess whether that means
"absent" or "not rated").

Options: ``feature`` (a name or list of names to keep), ``min_raters``
(default 1; the development copy has 74 (image, feature) cases, of which 17
have one rater, 15 two, 17 three and 25 four — ``min_raters=2`` keeps 57).
Image ``(3, H, W)`` float32 0..255; spacing unknown (1.0).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from clinloop.data.readers._npz import read_member, npz_headers
from clinloop.data.registry import Dataset, register_reader
from clinloop.data.sample import MultiRaterSample
from clinloop.errors import DataError

INDEX = "index.json"
SUFFIX = "_masks.npz"


def detect_isic(path: Path) -> bool:
    """A folder with ``index.json`` and at least one ``*_masks.npz`` (or the
    ``index.json`` itself)."""
    if path.is_file() and path.name == INDEX:
        path = path.parent
    if not path.is_dir() or not (path / INDEX).is_file():
        return False
    return next(path.glob("*" + SUFFIX), None) is not None


def _load_index(path: Path) -> list[dict]:
    f = path / INDEX
    try:
        entries = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"could not read the index ({type(e).__name__}: {e})", f) from None
    if not isinstance(entries, list):
        raise DataError("index.json must be a list of {image, feature, rater} objects", f)
    for k, e in enumerate(entries):
        if not (isinstance(e, dict) and all(isinstance(e.get(x), str) and e.get(x) for x in ("image", "feature", "rater"))):
            raise DataError(f"entry {k} must have string 'image', 'feature' and 'rater', got {e!r}", f)
    return entries


class ISICDataset(Dataset):
    """Lazy UDA2 feature cases; see the module docstring."""

    format = "isic"

    def __init__(self, root: Path, feature: str | list[str] | None = None, min_raters: int = 1):
        self.path = Path(root)
        self.name = self.path.name
        entries = _load_index(self.path)
        keep = None if feature is None else ({feature} if isinstance(feature, str) else set(feature))
        groups: dict[tuple[str, str], list[str]] = {}
        for e in entries:
            if keep is None or e["feature"] in keep:
                groups.setdefault((e["image"], e["feature"]), [])
                if e["rater"] not in groups[(e["image"], e["feature"])]:
                    groups[(e["image"], e["feature"])].append(e["rater"])
        if keep is not None:
            known = {e["feature"] for e in entries}
            unknown = keep - known
            if unknown:
                raise DataError(f"feature(s) {', '.join(sorted(unknown))} not in the index; known: {', '.join(sorted(known))}",
                                self.path / INDEX)
        if not groups:
            raise DataError("the index lists no masks (zero raters)", self.path / INDEX)
        self.items = []
        cases, pats = [], []
        for (img, feat), raters in sorted(groups.items()):
            if len(raters) < min_raters:
                continue
            stem = f"UDA2_pilot_{img}"
            self.items.append((stem, feat, raters))
            cases.append(f"{stem}/{feat}")
            pats.append(stem)
        super().__init__(cases, pats)

    def _load(self, i: int) -> MultiRaterSample:
        from PIL import Image

        stem, feat, raters = self.items[i]
        jpg = self.path / f"{stem}.jpg"
        npz = self.path / f"{stem}{SUFFIX}"
        try:
            with Image.open(jpg) as im:
                rgb = np.asarray(im.convert("RGB"))
        except Exception as e:
            raise DataError(f"could not read image ({type(e).__name__}: {e})", jpg) from None
        h, w = rgb.shape[:2]
        heads = npz_headers(npz, ("shape",))
        shape = read_member(npz, "shape")
        if shape.shape != (2,) or tuple(int(s) for s in shape) != (h, w):
            raise DataError(f"'shape' {shape.tolist()} does not match the image size {(h, w)} of {jpg.name}", npz)
        masks = []
        for r in raters:
            key = f"{feat}__{r}"
            if key not in heads:
                raise DataError(f"missing mask {key!r} listed in index.json", npz)
            packed = read_member(npz, key)
            if packed.dtype != np.uint8 or packed.shape != (h, (w + 7) // 8):
                raise DataError(
                    f"mask {key!r} must be bit-packed uint8 of shape {(h, (w + 7) // 8)}, got {packed.dtype} {packed.shape}", npz)
            masks.append(np.unpackbits(packed, axis=-1)[:, :w].astype(bool))
        return MultiRaterSample(
            image=np.moveaxis(rgb, -1, 0).astype(np.float32),
            masks=np.stack(masks),
            case_id=self.case_ids[i],
            patient_id=self.patient_ids[i],
            rater_ids=list(raters),
            rater_valid=np.ones(len(raters), dtype=bool),
            structure=feat,
            provenance={"path": str(jpg), "format": "isic", "masks": str(npz)},
        )


@register_reader("isic", detect_isic, "ISIC UDA2 feature masks (index.json + *_masks.npz + .jpg); options feature, min_raters")
def read_isic(path: str | Path, feature: str | list[str] | None = None, min_raters: int = 1) -> ISICDataset:
    """Open an ISIC UDA2 features folder."""
    path = Path(path)
    if path.is_file() and path.name == INDEX:
        path = path.parent
    if not path.is_dir() or not (path / INDEX).is_file():
        raise DataError(f"an ISIC UDA2 folder needs {INDEX} beside the *_masks.npz files", path)
    return ISICDataset(path, feature=feature, min_raters=min_raters)
