"""BraTS case folders (format name ``"brats"``): FLAIR and the whole tumour,
MECCA's BraTS setting (mecca.txt §5.1). One folder per case under ``<root>``,
in either naming::

    <root>/case_0/FLAIR.nii.gz         deepvoxnet2's export (../shared/data/brats2018_flair)
    <root>/case_0/GT_W.nii.gz          whole tumour, 0/1
    <root>/case_0/subject_id.txt       "Subject_id: Brats18_CBICA_AOO_1" (optional)

    <root>/Brats18_CBICA_AOO_1/Brats18_CBICA_AOO_1_flair.nii.gz   the challenge's own
    <root>/Brats18_CBICA_AOO_1/Brats18_CBICA_AOO_1_seg.nii.gz     labels 0,1,2,4 (2023: 0..3)

File names are matched case-insensitively; ``.nii`` works as well as
``.nii.gz``. The label is ``GT_W`` when present (must be 0/1), else ``GT`` /
``seg`` / ``<id>_seg`` (values 0..4): every non-zero label merged is the whole
tumour (edema + necrotic/non-enhancing core + enhancing tumour). Every
non-hidden sub-folder of ``<root>`` must be a case with exactly one FLAIR file
and a label (errors name the folder).

Case id = folder name; patient id = the subject id from ``subject_id.txt``
(``Subject_id:`` line, or its only line), else the ``<id>`` of
``<id>_flair.nii.gz``, else the folder name. One rater (id ``"0"``); structure
``"whole tumour"``; image ``(1, D, H, W)`` = FLAIR. Axes, spacing and affine:
:mod:`clinloop.data.readers._nifti_cases`.
"""
from __future__ import annotations

import re
from pathlib import Path

from clinloop.data.readers._nifti_cases import NiftiCase, NiftiCaseDataset, strip_nifti
from clinloop.data.registry import register_reader
from clinloop.errors import DataError

STRUCTURE = "whole tumour"
_LABEL_PRIORITY = ("gt_w", "gt", "seg")  # stems (lower case); "<id>_seg" ranks with "seg"


def _nifti_stems(folder: Path) -> dict[str, Path]:
    out = {}
    for f in folder.iterdir():
        stem = strip_nifti(f.name)
        if stem is not None and f.is_file() and not f.name.startswith("."):
            out[stem] = f
    return out


def _flair(stems: dict[str, Path], folder: Path) -> tuple[Path, str | None] | None:
    """(FLAIR file, subject id from its ``<id>_flair`` name or None)."""
    found = [(f, s[: -len("_flair")] if s.lower() != "flair" else None)
             for s, f in stems.items() if s.lower() == "flair" or s.lower().endswith("_flair")]
    if len(found) > 1:
        raise DataError(f"case has {len(found)} FLAIR files ({', '.join(sorted(f.name for f, _ in found))})", folder)
    return found[0] if found else None


def _label(stems: dict[str, Path]) -> Path | None:
    for want in _LABEL_PRIORITY:
        for s, f in sorted(stems.items()):
            low = s.lower()
            if low == want or (want == "seg" and low.endswith("_seg")):
                return f
    return None


def _subject_id(folder: Path) -> str | None:
    p = folder / "subject_id.txt"
    if not p.is_file():
        return None
    try:
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError as e:
        raise DataError(f"cannot read subject id ({e})", p) from None
    for ln in lines:
        m = re.match(r"subject_?id\s*[:=]\s*(\S+)", ln, re.IGNORECASE)
        if m:
            return m.group(1)
    return lines[0] if len(lines) == 1 and ":" not in lines[0] else None


def detect_brats(path: Path) -> bool:
    """A folder whose first case-like sub-folder holds ``FLAIR.nii[.gz]`` or
    ``<id>_flair.nii[.gz]``."""
    if not path.is_dir():
        return False
    for sub in sorted(path.iterdir()):
        if sub.is_dir() and not sub.name.startswith("."):
            try:
                return _flair(_nifti_stems(sub), sub) is not None
            except DataError:
                return True  # a BraTS case, only a broken one: let the reader say why
    return False


class BraTSDataset(NiftiCaseDataset):
    """Lazy BraTS cases (module docstring)."""

    format = "brats"

    def __init__(self, root: Path):
        folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                         key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])
        if not folders:
            raise DataError("no case folders (expected <root>/<case>/FLAIR.nii.gz + GT_W.nii.gz)", root)
        cases = []
        for d in folders:
            stems = _nifti_stems(d)
            fl = _flair(stems, d)
            if fl is None:
                raise DataError("case folder has no FLAIR image (FLAIR.nii.gz or <id>_flair.nii.gz)", d)
            label = _label(stems)
            if label is None:
                raise DataError("case folder has no tumour label (GT_W.nii.gz, GT.nii.gz or <id>_seg.nii.gz)", d)
            subject = _subject_id(d) or fl[1] or d.name
            cases.append(NiftiCase(d.name, subject, (fl[0],), label, {"subject_id": subject}))
        self.name = root.name
        super().__init__(root, cases, values=None, declared=None, structure=STRUCTURE, channels=1, modality="FLAIR",
                         declared_in="the BraTS labels (GT_W: 0/1; seg: 0..4)")

    def _declared(self, case: NiftiCase) -> tuple[int, ...]:
        return (0, 1) if strip_nifti(case.label.name).lower() == "gt_w" else (0, 1, 2, 3, 4)


@register_reader("brats", detect_brats, "BraTS case folders (FLAIR + whole-tumour label: GT_W or <id>_seg); no options")
def read_brats(path: str | Path, **options) -> BraTSDataset:
    """Open a folder of BraTS case folders (module docstring)."""
    path = Path(path)
    if options:
        raise DataError(f"the brats reader takes no options, got {', '.join(sorted(options))}", path)
    if not path.is_dir():
        raise DataError("a BraTS dataset is a folder of case folders, not a file", path)
    return BraTSDataset(path)


__all__ = ["BraTSDataset", "read_brats", "detect_brats", "STRUCTURE"]
