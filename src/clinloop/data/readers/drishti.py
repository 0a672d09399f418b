"""Drishti-GS1 fundus photos with expert-agreement maps (format name ``"drishti"``;
Sivaswamy et al., 2014/2015; a second fundus set for LEXU beside RIGA)::

    <root>/Training/drishtiGS_002/image.jpg            RGB photo (a crop around the disc)
    <root>/Training/drishtiGS_002/cup_agreement.png    uint8 0..4: how many experts marked the pixel
    <root>/Training/drishtiGS_002/disc_agreement.png
    <root>/Test/drishtiGS_001/...                      (the official 50 / 51 split)

``root`` may also be one split folder (``.../Test``). Extra files in a case
folder (``cdr.txt``, ``crop.json``) are kept in ``provenance``, not needed.

**Raters.** Four glaucoma experts drew disc and cup, but the dataset gives only
the per-pixel *count* of experts, not their masks. A case therefore has four
nested pseudo-raters ``"agree>=1"`` ... ``"agree>=4"`` (mask k = count ≥ k).
They reproduce every per-pixel statistic of the real four exactly: the soft
label S(M) = count / 4 and the rater variance p(1 − p) (LEXU's Eq. 1 targets)
and the majority (count ≥ 3), but not anything that depends on which expert
drew what (per-rater Dice, GED against the raters, a user "like expert 2").
So use it for LEXU's pixel and image-level uncertainty, not for SPA's
preference experiments.

Option ``structure``: ``"cup"``, ``"disc"`` or ``None`` (both, as separate cases
``"Test/drishtiGS_001/cup"`` sharing ``patient_id = "drishtiGS_001"``). Case ids
keep the split folder (``"Test/drishtiGS_001"``), and ``dataset.folder_split``
names it per case, so the official split is available without a random one
(:func:`clinloop.data.splits.folder_split`). An agreement value outside 0..4,
a size that differs from the photo's, or a missing file is a DataError naming
the file. Image: ``(3, H, W)`` float32 0..255; spacing unknown (1.0).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from clinloop.data.registry import Dataset, register_reader
from clinloop.data.sample import MultiRaterSample
from clinloop.errors import DataError

STRUCTURES = ("disc", "cup")
N_EXPERTS = 4
_IMAGE = "image.jpg"


def _is_case(d: Path) -> bool:
    return d.is_dir() and (d / _IMAGE).is_file() and any((d / f"{s}_agreement.png").is_file() for s in STRUCTURES)


def _case_dirs(d: Path) -> list[Path]:
    return sorted(c for c in d.iterdir() if _is_case(c)) if d.is_dir() else []


def _splits(root: Path) -> list[tuple[str, list[Path]]]:
    """[(split folder name or "", case folders)]."""
    if _is_case(root):
        return [("", [root])]
    direct = _case_dirs(root)
    if direct:
        return [(root.name, direct)]
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        cases = _case_dirs(sub)
        if cases:
            out.append((sub.name, cases))
    return out


def detect_drishti(path: Path) -> bool:
    """A folder of ``drishtiGS_*``-style case folders (image.jpg + *_agreement.png), or of split folders of them."""
    path = Path(path)
    return path.is_dir() and bool(_splits(path))


def read_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read image: {e}", path) from e


def agreement_masks(counts: np.ndarray, where: Path | str, n_experts: int = N_EXPERTS) -> np.ndarray:
    """Agreement map (H, W) of expert counts 0..n -> ``(n, H, W)`` bool nested masks, mask k = count ≥ k + 1."""
    c = np.asarray(counts)
    if c.ndim == 3 and c.shape[-1] in (3, 4) and (c[..., :3] == c[..., :1]).all():
        c = c[..., 0]  # stored as grey RGB(A)
    if c.ndim != 2:
        raise DataError(f"agreement map must be a single-channel (H, W) image, got shape {c.shape}", where)
    if c.size and (c.min() < 0 or c.max() > n_experts):
        raise DataError(f"agreement map values must be expert counts 0..{n_experts}, found {int(c.min())}..{int(c.max())}",
                        where)
    return np.stack([c >= k for k in range(1, n_experts + 1)])


class DrishtiDataset(Dataset):
    """Lazy Drishti-GS1 cases; one case per (photo, structure)."""

    format = "drishti"

    def __init__(self, path: Path, structure: str | None = None):
        self.path = Path(path)
        self.name = self.path.name
        if structure is not None and structure not in STRUCTURES:
            raise ValueError(f"Drishti-GS1 structure must be 'disc', 'cup' or None, got {structure!r}")
        self.structures = (structure,) if structure else STRUCTURES
        splits = _splits(self.path)
        if not splits:
            raise DataError("no Drishti-GS1 case folder (image.jpg + cup/disc_agreement.png) found", self.path)
        multi = splits[0][1][0].parent.parent == self.path  # root holds split folders: ids keep them
        self.items: list[tuple[Path, str, str]] = []  # (case folder, structure, split name)
        cases, patients = [], []
        for split, dirs in splits:
            for d in dirs:
                for st in self.structures:
                    self.items.append((d, st, split))
                    base = f"{split}/{d.name}" if multi else d.name
                    cases.append(base if len(self.structures) == 1 else f"{base}/{st}")
                    patients.append(d.name)
        self.folder_split = [split for _, _, split in self.items]
        super().__init__(cases, patients)

    def _load(self, i: int) -> MultiRaterSample:
        d, st, split = self.items[i]
        img = read_png(d / _IMAGE)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        if img.ndim != 3 or img.shape[-1] not in (3, 4):
            raise DataError(f"photo must be RGB (H, W, 3), got shape {img.shape}", d / _IMAGE)
        f = d / f"{st}_agreement.png"
        if not f.is_file():
            raise DataError(f"no {st} agreement map in this case folder", f)
        masks = agreement_masks(read_png(f), f)
        if masks.shape[1:] != img.shape[:2]:
            raise DataError(f"agreement map is {masks.shape[1:]} but the photo is {img.shape[:2]}", f)
        prov = {"path": str(d), "format": "drishti", "split": split,
                "raters": "nested agreement thresholds (count >= k), not the experts' own masks"}
        if (d / "cdr.txt").is_file():
            prov["cup_to_disc_ratios"] = [float(v) for v in (d / "cdr.txt").read_text().split()]
        if (d / "crop.json").is_file():
            prov["crop"] = json.loads((d / "crop.json").read_text())
        return MultiRaterSample(
            image=np.moveaxis(img[..., :3], -1, 0).astype(np.float32),
            masks=masks,
            case_id=self.case_ids[i],
            patient_id=self.patient_ids[i],
            rater_ids=[f"agree>={k}" for k in range(1, N_EXPERTS + 1)],
            structure=st,
            provenance=prov,
        )


@register_reader("drishti", detect_drishti,
                 "Drishti-GS1 fundus disc/cup (case folders: image.jpg, *_agreement.png); option structure")
def read_drishti(path: str | Path, structure: str | None = None) -> DrishtiDataset:
    """Open Drishti-GS1 (root with Training/ and Test/, or one of them); ``structure`` in {"disc", "cup", None}."""
    return DrishtiDataset(Path(path), structure=structure)
