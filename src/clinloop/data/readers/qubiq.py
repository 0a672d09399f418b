"""QUBIQ challenge layout (format name ``"qubiq"``; SPA/MedUHIP's benchmark)::

    <root>/Training/case01/image.nii.gz
    <root>/Training/case01/task01_seg01.nii.gz ... task01_seg07.nii.gz
    <root>/Validation/case01/...            (optional further split folders)

``root`` may also be a folder of ``caseNN`` folders directly (no split level).
Any task number ``task0T`` and any rater count ``segRR`` are accepted (QUBIQ:
brain growth 1 task x 7 raters, kidney 1 x 3, prostate 2 x 6, brain tumour
3 x 3); ``.nii`` works as well as ``.nii.gz``; names are matched
case-insensitively.

Options of :func:`read_qubiq`:

* ``task``: which task's masks to load (default: the lowest task number
  present). A case folder without any mask for that task is left out and
  listed in ``dataset.skipped`` (QUBIQ test folders have images only).

Case ids keep the split folder: ``"Training/case01"`` (just ``"case01"`` when
``root`` is the folder of cases); ``patient_id`` = case id. The raters of a task
are the union of ``segRR`` numbers over its cases (``rater_ids`` ``"seg01"``
...); a case missing one of them gets ``rater_valid`` False there (and an empty
mask), which is different from a drawn-but-empty mask.

Arrays: image ``(H, W)`` -> ``(1, H, W)``; ``(H, W, C)`` with ``(H, W)``
masks -> ``(C, H, W)`` (multi-modal 2-D, e.g. the brain-tumour task); a 3-D
image with 3-D masks stays a volume ``(1, X, Y, Z)``. Axes are nibabel's voxel
axes, ``spacing`` is the header's zooms for them and ``affine`` the NIfTI
affine. Masks must be 0/1 (0/255 is accepted and mapped to 0/1); anything else
is a DataError naming the file.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from clinloop.data.registry import Dataset, register_reader
from clinloop.data.sample import MultiRaterSample
from clinloop.errors import DataError

_SEG = re.compile(r"^task(\d+)_seg(\d+)\.nii(\.gz)?$", re.IGNORECASE)
_IMG = re.compile(r"^image\.nii(\.gz)?$", re.IGNORECASE)


def _case_files(d: Path) -> tuple[Path | None, dict[tuple[int, int], Path]]:
    """(image file, {(task, rater): mask file}) of one case folder."""
    image, segs = None, {}
    for f in d.iterdir():
        if _IMG.match(f.name):
            image = f
        else:
            m = _SEG.match(f.name)
            if m:
                segs[(int(m.group(1)), int(m.group(2)))] = f
    return image, segs


def _is_case(d: Path) -> bool:
    if not d.is_dir():
        return False
    return _case_files(d)[0] is not None


def _case_dirs(d: Path) -> list[Path]:
    return sorted(c for c in d.iterdir() if c.is_dir() and _is_case(c)) if d.is_dir() else []


def _splits(root: Path) -> list[tuple[str, list[Path]]]:
    """[(split name or "", case folders)]: split folders if any, else root's cases."""
    direct = _case_dirs(root)
    if direct:
        return [("", direct)]
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        cases = _case_dirs(sub)
        if cases:
            out.append((sub.name, cases))
    return out


def detect_qubiq(path: Path) -> bool:
    """A folder with ``caseNN/image.nii[.gz]`` + ``task..._seg...nii[.gz]`` folders,
    directly or one level down (``Training/``). Looks at one case only."""
    if not path.is_dir():
        return False
    for level in (path, *(p for p in sorted(path.iterdir()) if p.is_dir())):
        for c in sorted(level.iterdir()):
            if c.is_dir() and c.name.lower().startswith("case"):
                image, segs = _case_files(c)
                if image is not None and segs:
                    return True
    return False


def _nifti(path: Path):
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as e:  # nibabel raises many types for bad files
        raise DataError(f"could not read NIfTI ({type(e).__name__}: {e})", path) from None
    return img, data


def _binary(a: np.ndarray, path: Path) -> np.ndarray:
    vals = np.unique(a)
    if np.isin(vals, (0, 1)).all():
        return a.astype(bool)
    if np.isin(vals, (0, 255)).all():
        return a == 255
    shown = ", ".join(str(v) for v in vals[:6]) + (" ..." if vals.size > 6 else "")
    raise DataError(f"mask must be binary (0/1 or 0/255), found values {shown}", path)


class QUBIQDataset(Dataset):
    """Lazy QUBIQ cases of one task; see the module docstring."""

    format = "qubiq"

    def __init__(self, root: Path, task: int | None = None):
        self.path = Path(root)
        self.name = self.path.name
        splits = _splits(self.path)
        if not splits:
            raise DataError("no QUBIQ case folders (caseNN/image.nii.gz) found", self.path)
        found: list[tuple[str, Path, Path, dict[tuple[int, int], Path]]] = []
        for split, cases in splits:
            for c in cases:
                image, segs = _case_files(c)
                cid = f"{split}/{c.name}" if split else c.name
                found.append((cid, c, image, segs))
        tasks = sorted({t for *_, segs in found for (t, _r) in segs})
        if not tasks:
            raise DataError("no task..._seg...nii(.gz) mask files in any case (zero raters)", self.path)
        if task is None:
            task = tasks[0]
        try:
            if isinstance(task, bool) or int(task) != float(task):
                raise ValueError(task)
        except (TypeError, ValueError):
            raise DataError(f"option task={task!r}: not a task number; tasks found: {', '.join(map(str, tasks))}",
                            self.path) from None
        if int(task) not in tasks:
            raise DataError(f"task {task} not present; tasks found: {', '.join(map(str, tasks))}", self.path)
        self.task = int(task)
        self.tasks = tasks
        self.raters = sorted({r for *_, segs in found for (t, r) in segs if t == self.task})
        self.items, self.skipped = [], []
        for cid, c, image, segs in found:
            mine = {r: f for (t, r), f in segs.items() if t == self.task}
            if mine:
                self.items.append((cid, image, mine))
            else:
                self.skipped.append((cid, f"no masks for task {self.task}"))
        ids = [cid for cid, *_ in self.items]
        super().__init__(ids, ids)

    def _load(self, i: int) -> MultiRaterSample:
        cid, image_path, segs = self.items[i]
        nii, img = _nifti(image_path)
        img = np.asarray(img, dtype=np.float32)
        zooms = tuple(float(z) for z in nii.header.get_zooms())
        masks, valid = [], []
        mshape = None
        for r in self.raters:
            f = segs.get(r)
            if f is None:
                masks.append(None)
                valid.append(False)
                continue
            _, m = _nifti(f)
            m = np.squeeze(np.asarray(m)) if m.ndim > 2 and 1 in m.shape[2:] else np.asarray(m)
            if mshape is None:
                mshape = m.shape
            elif m.shape != mshape:
                raise DataError(f"mask shape {m.shape} differs from the case's other masks {mshape}", f)
            masks.append(_binary(m, f))
            valid.append(True)
        # arrange the image channels-first to match the mask's spatial shape
        if img.ndim > len(mshape) and img.shape[: len(mshape)] == mshape:
            extra = img.shape[len(mshape):]
            img = img.reshape(*mshape, int(np.prod(extra)))  # (*spatial, C)
            img = np.moveaxis(img, -1, 0)
        elif img.shape == mshape:
            img = img[None]
        else:
            raise DataError(
                f"image shape {img.shape} does not match mask shape {mshape} "
                f"({segs[min(segs)].name})", image_path)
        spatial = img.shape[1:]
        spacing = zooms[: len(spatial)] if len(zooms) >= len(spatial) else None
        if spacing is not None and min(spacing) <= 0:
            spacing = None
        stack = np.stack([m if m is not None else np.zeros(spatial, bool) for m in masks])
        return MultiRaterSample(
            image=img,
            masks=stack,
            case_id=cid,
            patient_id=cid,
            spacing=spacing,
            affine=nii.affine,
            rater_ids=[f"seg{r:02d}" for r in self.raters],
            rater_valid=np.array(valid, dtype=bool),
            structure=f"task{self.task:02d}",
            provenance={"path": str(image_path), "format": "qubiq", "task": self.task,
                        "masks": [str(segs[r]) if r in segs else None for r in self.raters]},
        )


@register_reader("qubiq", detect_qubiq, "QUBIQ NIfTI folders (Training/caseNN/image.nii.gz + task0T_segRR.nii.gz); option task")
def read_qubiq(path: str | Path, task: int | None = None) -> QUBIQDataset:
    """Open a QUBIQ task folder; ``task`` defaults to the lowest present."""
    path = Path(path)
    if not path.is_dir():
        raise DataError("a QUBIQ dataset is a folder (Training/caseNN/...), not a file", path)
    return QUBIQDataset(path, task=task)
