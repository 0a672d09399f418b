"""Medical Segmentation Decathlon layout (format name ``"decathlon"``), as
nnU-Net and MONAI read it::

    <root>/dataset.json
    <root>/imagesTr/la_003.nii.gz      3-D (X,Y,Z) or channels-last 4-D (X,Y,Z,C)
    <root>/labelsTr/la_003.nii.gz      integer label map (X,Y,Z)
    <root>/imagesTs/...                optional, images without labels

``dataset.json`` (MSD / nnU-Net v1)::

    {"name": "...", "modality": {"0": "FLAIR", "1": "T1w"},
     "labels": {"0": "background", "1": "edema", "2": "enhancing tumour"},
     "numTraining": 2, "training": [{"image": "./imagesTr/x.nii.gz",
                                     "label": "./labelsTr/x.nii.gz"}, ...],
     "test": ["./imagesTs/y.nii.gz", ...]}

nnU-Net v2 files are read too: ``"channel_names"`` instead of ``"modality"``,
``"labels"`` mapping name -> value (or a list of values: a region),
``"file_ending"``, no ``"training"`` list (cases are ``labelsTr/<case><ending>``
with one image file per channel, ``imagesTr/<case>_<XXXX><ending>``).

Options of :func:`read_decathlon`:

* ``label``: which label value(s) make the structure: an int, a label name
  (``"left atrium"``), a list of ints/names, or a string ``"1,2"`` / ``"1+2"``
  (from ``--option label=1,2``). Default: every non-background label merged
  (the whole organ / whole tumour of most MSD tasks). The structure name is
  the label's name (names joined with ``+`` for several, or the name of a
  region whose values are exactly the chosen ones).
* ``split``: ``"train"`` (default; labelled cases), ``"test"`` (the ``test``
  images, zero raters) or ``"all"``.

Case id = image file name without its ending (``la_003``; the channel suffix
dropped in v2); patient id = case id; one rater (id ``"0"``). Axes, spacing and
affine: :mod:`clinloop.data.readers._nifti_cases`. Errors name the file: a bad
or inconsistent ``dataset.json``, a listed file that does not exist (found when
the dataset is opened), a label map whose geometry differs from its image's or
that holds undeclared values (found when the case is read).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from clinloop.data.readers._nifti_cases import NiftiCase, NiftiCaseDataset, strip_nifti
from clinloop.data.registry import register_reader
from clinloop.errors import DataError

_SPLITS = ("train", "test", "all")


def detect_decathlon(path: Path) -> bool:
    """A folder holding ``dataset.json`` and an ``imagesTr/`` folder."""
    return path.is_dir() and (path / "dataset.json").is_file() and (path / "imagesTr").is_dir()


def _read_json(p: Path) -> dict[str, Any]:
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot parse JSON ({e})", p) from None
    if not isinstance(doc, dict):
        raise DataError(f"dataset.json must be an object, got {type(doc).__name__}", p)
    return doc


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"\s*\d+\s*", v):
        return int(v)
    return None


def parse_labels(doc: dict[str, Any], p: Path) -> dict[str, tuple[int, ...]]:
    """``labels`` of either convention as ``{name: (values...)}``, in value order."""
    raw = doc.get("labels")
    if not isinstance(raw, dict) or not raw:
        raise DataError("dataset.json: 'labels' must be a non-empty object (e.g. {\"0\": \"background\", "
                        "\"1\": \"left atrium\"})", p)
    if all(_int(k) is not None for k in raw):  # MSD / v1: {"1": "name"}
        out: dict[str, tuple[int, ...]] = {}
        for k, name in sorted(raw.items(), key=lambda kv: int(kv[0])):
            if not isinstance(name, str) or not name.strip():
                raise DataError(f"dataset.json: labels[{k!r}] must be a name, got {name!r}", p)
            out[name.strip()] = out.get(name.strip(), ()) + (int(k),)
        return out
    out = {}
    for name, v in raw.items():  # nnU-Net v2: {"name": 1} or {"region": [1, 2]}
        vals = [_int(x) for x in (v if isinstance(v, list) else [v])]
        if not vals or any(x is None for x in vals):
            raise DataError(f"dataset.json: labels[{name!r}] must be a label value or a list of them, got {v!r}", p)
        out[name] = tuple(vals)
    return dict(sorted(out.items(), key=lambda kv: min(kv[1])))


def channel_names(doc: dict[str, Any], p: Path) -> list[str] | None:
    raw = doc.get("modality", doc.get("channel_names"))
    if raw is None:
        return None
    key = "modality" if "modality" in doc else "channel_names"
    if not isinstance(raw, dict) or not raw or any(_int(k) is None for k in raw) \
            or sorted(int(k) for k in raw) != list(range(len(raw))):
        raise DataError(f"dataset.json: '{key}' must map channel numbers 0..C-1 to names, got {raw!r}", p)
    return [str(raw[k]) for k in sorted(raw, key=int)]


def resolve_label(label: Any, labels: dict[str, tuple[int, ...]], p: Path) -> tuple[list[int], str]:
    """(label values, structure name) for the ``label`` option (module docstring)."""
    fg = {n: v for n, v in labels.items() if v != (0,)}
    by_value = {v[0]: n for n, v in fg.items() if len(v) == 1}
    shown = ", ".join(f"{'/'.join(map(str, v))} {n}" for n, v in labels.items())
    if label is None:
        values = sorted({x for v in fg.values() for x in v})
    else:
        if isinstance(label, str) and label.strip().lower() in {n.lower() for n in fg}:
            items: list[Any] = [label.strip()]
        elif isinstance(label, str):
            items = [t for t in re.split(r"[,+]", label) if t.strip()]
        else:
            items = list(label) if isinstance(label, (list, tuple)) else [label]
        values = []
        for t in items:
            v = _int(t)
            names = [n for n in fg if isinstance(t, str) and n.lower() == t.strip().lower()]
            if v is not None and any(v in vs for vs in fg.values()):
                values.append(v)
            elif names:
                values.extend(fg[names[0]])
            else:
                raise DataError(f"label {t!r} is not a foreground label of dataset.json (labels: {shown})", p)
        values = sorted(set(values))
    if not values:
        raise DataError(f"dataset.json declares no foreground label (labels: {shown})", p)
    exact = [n for n, v in fg.items() if sorted(v) == values]
    name = exact[0] if exact else "+".join(by_value.get(v, str(v)) for v in values)
    return values, name


def _file(root: Path, rel: Any, what: str, p: Path) -> Path:
    if not isinstance(rel, str) or not rel.strip():
        raise DataError(f"dataset.json: {what} must be a file path, got {rel!r}", p)
    f = root / rel.strip()
    if not f.is_file():
        raise DataError(f"{what} listed in dataset.json does not exist", f)
    if strip_nifti(f.name) is None:
        raise DataError(f"{what} is not a NIfTI file (.nii/.nii.gz)", f)
    return f


def _msd_cases(root: Path, doc: dict[str, Any], split: str, p: Path) -> list[NiftiCase]:
    cases = []
    if split in ("train", "all"):
        training = doc.get("training")
        if not isinstance(training, list):
            raise DataError("dataset.json: 'training' must be a list of {\"image\", \"label\"} entries", p)
        for k, e in enumerate(training):
            if not isinstance(e, dict) or "image" not in e or "label" not in e:
                raise DataError(f"dataset.json: training[{k}] must be an object with 'image' and 'label', got {e!r}", p)
            img = _file(root, e["image"], f"training[{k}] image", p)
            lab = _file(root, e["label"], f"training[{k}] label", p)
            cid = strip_nifti(img.name)
            cases.append(NiftiCase(cid, cid, (img,), lab))
    if split in ("test", "all"):
        test = doc.get("test", [])
        if not isinstance(test, list):
            raise DataError("dataset.json: 'test' must be a list of image paths", p)
        for k, e in enumerate(test):
            img = _file(root, e.get("image") if isinstance(e, dict) else e, f"test[{k}] image", p)
            cid = strip_nifti(img.name)
            cases.append(NiftiCase(cid, cid, (img,), None))
    return cases


def _v2_cases(root: Path, doc: dict[str, Any], split: str, n_channels: int, p: Path) -> list[NiftiCase]:
    ending = doc.get("file_ending", ".nii.gz")
    if ending not in (".nii.gz", ".nii"):
        raise DataError(f"dataset.json: file_ending {ending!r} is not supported (NIfTI only: .nii.gz, .nii)", p)

    def channels(folder: Path, cid: str) -> tuple[Path, ...]:
        files = tuple(folder / f"{cid}_{c:04d}{ending}" for c in range(n_channels))
        for f in files:
            if not f.is_file():
                raise DataError(f"channel file of case {cid!r} is missing", f)
        return files

    cases = []
    if split in ("train", "all"):
        lab_dir = root / "labelsTr"
        labs = sorted(f for f in lab_dir.iterdir() if f.name.endswith(ending) and not f.name.startswith(".")) \
            if lab_dir.is_dir() else []
        if not labs:
            raise DataError(f"no 'training' list in dataset.json and no labelsTr/*{ending} files", root)
        for f in labs:
            cid = f.name[: -len(ending)]
            cases.append(NiftiCase(cid, cid, channels(root / "imagesTr", cid), f))
    if split in ("test", "all") and (root / "imagesTs").is_dir():
        for f in sorted(f for f in (root / "imagesTs").glob(f"*_0000{ending}") if not f.name.startswith(".")):
            cid = f.name[: -len(f"_0000{ending}")]
            cases.append(NiftiCase(cid, cid, channels(root / "imagesTs", cid), None))
    return cases


class DecathlonDataset(NiftiCaseDataset):
    """Lazy Decathlon cases (module docstring)."""

    format = "decathlon"

    def __init__(self, root: Path, label: Any = None, split: str = "train"):
        p = root / "dataset.json"
        if not p.is_file():
            raise DataError("not a Decathlon folder: no dataset.json", root)
        if split not in _SPLITS:
            raise DataError(f"split must be one of {', '.join(_SPLITS)}, got {split!r}", root)
        self.doc = doc = _read_json(p)
        self.labels = parse_labels(doc, p)
        self.channel_names = channel_names(doc, p)
        values, structure = resolve_label(label, self.labels, p)
        if "training" in doc:
            cases = _msd_cases(root, doc, split, p)
        else:
            cases = _v2_cases(root, doc, split, len(self.channel_names or [0]), p)
        n_train = sum(c.label is not None for c in cases)
        if split != "test" and _int(doc.get("numTraining")) not in (None, n_train):
            raise DataError(f"dataset.json: numTraining is {doc['numTraining']} but {n_train} training cases "
                            "are listed", p)
        self.name = str(doc.get("name") or root.name)
        self.split = split
        declared = sorted({x for v in self.labels.values() for x in v} | {0})
        super().__init__(root, cases, values=values, declared=declared, structure=structure,
                         channels=None if self.channel_names is None else len(self.channel_names),
                         modality=",".join(self.channel_names or []), declared_in="dataset.json labels")


@register_reader("decathlon", detect_decathlon,
                 "Medical Segmentation Decathlon / nnU-Net (dataset.json + imagesTr/ + labelsTr/); options label, split")
def read_decathlon(path: str | Path, label: Any = None, split: str = "train", **options) -> DecathlonDataset:
    """Open a Decathlon-layout folder (module docstring)."""
    path = Path(path)
    if options:
        raise DataError(f"the decathlon reader takes only label and split, got {', '.join(sorted(options))}", path)
    if not path.is_dir():
        raise DataError("a Decathlon dataset is a folder (dataset.json + imagesTr/ + labelsTr/), not a file", path)
    return DecathlonDataset(path, label=label, split=split)


__all__ = ["DecathlonDataset", "read_decathlon", "detect_decathlon", "parse_labels", "resolve_label"]
