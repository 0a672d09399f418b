"""The canonical multi-rater folder layout: one folder per case.

Layout::

    <root>/
      dataset.json                     optional, schema below
      <case_id>/
        image.<png|jpg|jpeg|npy|nii|nii.gz|dcm>   exactly one image file, or
        image/                         a folder holding one DICOM series
        rater_<id>.<png|npy|nii|nii.gz>  zero or more binary masks, one per rater
      <case_id>/ ...

* Every non-hidden sub-folder of ``<root>`` is a case and must hold exactly one
  image (files and folders starting with ``.`` are ignored; so are files
  directly in ``<root>`` other than ``dataset.json``, and files in a case folder
  that are neither ``image.*`` nor ``rater_*``).
* Images and masks follow :mod:`clinloop.data.io` (axis order, formats, binary
  rule: masks are 0/1, PNG masks may also be 0/255). ``image.npy`` is always read
  **channels-first**: ``(C, H, W)`` or ``(C, D, H, W)``; a 2-D ``(H, W)`` array is
  a single-channel image. Store a grey volume as ``(1, D, H, W)`` (or as NIfTI).
* Rater ids are the ``<id>`` of ``rater_<id>.*`` (letters, digits, ``_`` and
  ``-``). Without ``dataset.json`` a case's raters are its mask files, in natural
  order (``rater_2`` before ``rater_10``).
* A case without rater files is an **unlabeled** image (zero raters): it loads,
  ``clinloop data info`` counts it, ``clinloop data convert`` copies it; training
  code calls :meth:`~clinloop.data.sample.MultiRaterSample.require_raters`.
* *Missing* is not *empty*: when ``dataset.json`` lists a rater for a case and
  that case has no ``rater_<id>`` file, the rater is loaded with an all-false
  mask and ``rater_valid=False``. An empty file (all zeros) is a valid rater who
  drew nothing.

``dataset.json`` (every key optional)::

    {
      "clinloop_canonical": 1,          schema version (only 1 exists)
      "name": "riga-cup",               dataset name (default: folder name)
      "description": "...",
      "modality": "fundus photo",       free text (CT, MR, ...)
      "licence": "CC BY 4.0",
      "structure": "cup",               default structure name for all cases
      "spacing": [0.7, 0.7],            default spacing (spatial axis order) for
                                        images whose file has none (PNG/JPEG/NPY)
      "raters": ["0", "1", "2"],        rater ids expected in every case
      "cases": {
        "<case folder>": {
          "case_id": "LIDC-0001/n1/s3", original id when the folder name had to
                                        be made file-system safe
          "patient_id": "LIDC-0001",    for patient-wise splits (default case id)
          "structure": "nodule",
          "raters": ["0", "1", "3"],    expected raters of this case (overrides
                                        the top-level list)
          "spacing": [2.5, 0.7, 0.7],   overrides the file's and the default
          "affine": [[...4x4...]] | null  overrides the file's (null: no affine)
        }
      }
    }

Unknown keys are errors (they are usually typos). A mask file whose rater is not
in the expected list is an error, so the list and the files cannot drift apart.

Spacing precedence: ``cases.<id>.spacing`` > the image file's own (NIfTI,
DICOM) > top-level ``spacing`` > 1.0.

:func:`write_canonical` writes this layout all-or-nothing.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from clinloop.data.io import IMAGE_SUFFIXES, MASK_SUFFIXES, file_suffix, is_dicom_series_dir, read_image, read_mask
from clinloop.data.registry import Dataset, register_reader
from clinloop.data.sample import MultiRaterSample
from clinloop.errors import DataError

SCHEMA_VERSION = 1
_TOP_KEYS = {"clinloop_canonical", "name", "description", "modality", "licence", "license", "structure",
             "spacing", "raters", "cases"}
_CASE_KEYS = {"case_id", "patient_id", "structure", "raters", "spacing", "affine"}
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


# ------------------------------------------------------------ dataset.json
def _check_str(v, where, path):
    if not isinstance(v, str):
        raise DataError(f"dataset.json: {where} must be a string, got {type(v).__name__}", path)


def _check_spacing(v, where, path):
    if not (isinstance(v, list) and len(v) in (2, 3) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                            and x > 0 for x in v)):
        raise DataError(f"dataset.json: {where} must be a list of 2 or 3 positive numbers, got {v!r}", path)


def _check_raters(v, where, path):
    if not (isinstance(v, list) and all(isinstance(r, str) and _SAFE_ID.match(r) for r in v)):
        raise DataError(f"dataset.json: {where} must be a list of rater ids (letters, digits, _ and -), got {v!r}", path)
    if len(set(v)) != len(v):
        raise DataError(f"dataset.json: {where} lists a rater twice: {v!r}", path)


def validate_dataset_json(doc: Any, path: str | Path = "dataset.json") -> dict[str, Any]:
    """Check ``doc`` against the schema in the module docstring; return it."""
    if not isinstance(doc, dict):
        raise DataError(f"dataset.json must be an object, got {type(doc).__name__}", path)
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise DataError(f"dataset.json: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_TOP_KEYS))}", path)
    if doc.get("clinloop_canonical", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise DataError(f"dataset.json: unsupported clinloop_canonical version {doc['clinloop_canonical']!r}", path)
    for k in ("name", "description", "modality", "licence", "license", "structure"):
        if k in doc:
            _check_str(doc[k], k, path)
    if "spacing" in doc:
        _check_spacing(doc["spacing"], "spacing", path)
    if "raters" in doc:
        _check_raters(doc["raters"], "raters", path)
    cases = doc.get("cases", {})
    if not isinstance(cases, dict):
        raise DataError("dataset.json: cases must be an object mapping case folder -> entry", path)
    for cid, entry in cases.items():
        if not isinstance(entry, dict):
            raise DataError(f"dataset.json: cases.{cid} must be an object", path)
        unknown = sorted(set(entry) - _CASE_KEYS)
        if unknown:
            raise DataError(f"dataset.json: cases.{cid}: unknown key(s) {', '.join(unknown)}; "
                            f"allowed: {', '.join(sorted(_CASE_KEYS))}", path)
        for k in ("case_id", "patient_id", "structure"):
            if k in entry:
                _check_str(entry[k], f"cases.{cid}.{k}", path)
        if "spacing" in entry:
            _check_spacing(entry["spacing"], f"cases.{cid}.spacing", path)
        if "raters" in entry:
            _check_raters(entry["raters"], f"cases.{cid}.raters", path)
        if entry.get("affine") is not None:
            a = entry["affine"]
            try:
                arr = np.asarray(a, dtype=np.float64)
            except (TypeError, ValueError):
                arr = None
            if arr is None or arr.shape != (4, 4) or not np.isfinite(arr).all():
                raise DataError(f"dataset.json: cases.{cid}.affine must be a 4x4 list of numbers or null", path)
    return doc


def _load_dataset_json(root: Path) -> dict[str, Any]:
    p = root / "dataset.json"
    if not p.exists():
        return {}
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot parse JSON ({e})", p) from None
    return validate_dataset_json(doc, p)


# ------------------------------------------------------------------ reading
def _image_entry(case_dir: Path) -> Path | None:
    """The case's image file (or DICOM series folder); error when ambiguous."""
    found = []
    for p in case_dir.iterdir():
        if p.name.startswith("."):
            continue
        if p.is_dir() and p.name == "image":
            found.append(p)
        elif p.is_file() and p.name.lower().startswith("image.") and file_suffix(p) in IMAGE_SUFFIXES:
            found.append(p)
    if len(found) > 1:
        raise DataError(f"case has {len(found)} images ({', '.join(sorted(p.name for p in found))}); keep exactly one",
                        case_dir)
    return found[0] if found else None


def _rater_files(case_dir: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in case_dir.iterdir():
        if not p.is_file() or not p.name.startswith("rater_"):
            continue
        suf = file_suffix(p)
        rid = p.name[len("rater_"): len(p.name) - len(suf)]
        if suf not in MASK_SUFFIXES:
            raise DataError(f"unsupported rater mask type {suf or '(no suffix)'}; use {', '.join(MASK_SUFFIXES)}", p)
        if not _SAFE_ID.match(rid):
            raise DataError(f"bad rater id {rid!r} (letters, digits, _ and - only)", p)
        if rid in out:
            raise DataError(f"rater {rid!r} has two mask files ({out[rid].name}, {p.name})", case_dir)
        out[rid] = p
    return out


def detect(path: Path) -> bool:
    """A folder with at least one sub-folder holding an ``image.*`` file or an
    ``image/`` folder."""
    if not path.is_dir():
        return False
    for sub in path.iterdir():
        if sub.is_dir() and not sub.name.startswith("."):
            if (sub / "image").is_dir() or any(p.is_file() and p.name.lower().startswith("image.")
                                              and file_suffix(p) in IMAGE_SUFFIXES for p in sub.iterdir()):
                return True
    return False


class CanonicalDataset(Dataset):
    """Lazy dataset over a canonical folder (see module docstring)."""

    format = "canonical"

    def __init__(self, root: Path):
        self.path = root
        self.meta = _load_dataset_json(root)
        self.name = self.meta.get("name", root.name)
        folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                         key=lambda p: _natural_key(p.name))
        if not folders:
            raise DataError("no case folders (expected <root>/<case_id>/image.*)", root)
        for p in folders:  # fail early (and cheaply) on a folder that is not a case
            if _image_entry(p) is None:
                raise DataError("case folder has no image (expected image.<png|jpg|npy|nii|nii.gz|dcm> "
                                "or an image/ DICOM series folder)", p)
        self.folders = folders
        cases = self.meta.get("cases", {})
        stray = sorted(set(cases) - {p.name for p in folders})
        if stray:
            raise DataError(f"dataset.json describes case folder(s) that do not exist: {', '.join(stray[:5])}", root)
        self.entries = [cases.get(p.name, {}) for p in folders]
        case_ids = [e.get("case_id", p.name) for p, e in zip(folders, self.entries)]
        super().__init__(case_ids, [e.get("patient_id", c) for e, c in zip(self.entries, case_ids)])

    def _load(self, i: int) -> MultiRaterSample:
        folder, entry = self.folders[i], self.entries[i]
        img_path = _image_entry(folder)
        if img_path is None:  # removed since the dataset was opened
            raise DataError("case folder has no image", folder)
        image, spacing, affine, meta = read_image(img_path, channels_first=True)
        spatial = image.shape[1:]
        if "spacing" in entry:
            spacing = tuple(entry["spacing"])
        elif not meta.get("spacing_known", False) and "spacing" in self.meta:
            spacing = tuple(self.meta["spacing"])
        if len(spacing) != len(spatial):
            raise DataError(f"spacing {tuple(spacing)} from dataset.json does not fit image shape {image.shape}", img_path)
        if "affine" in entry:
            affine = None if entry["affine"] is None else np.asarray(entry["affine"], dtype=np.float64)
        files = _rater_files(folder)
        expected = entry.get("raters", self.meta.get("raters"))
        if expected is None:
            rater_ids = sorted(files, key=_natural_key)
        else:
            extra = sorted(set(files) - set(expected), key=_natural_key)
            if extra:
                raise DataError(f"rater file(s) {', '.join('rater_' + r for r in extra)} not listed in dataset.json "
                                f"raters {expected}", folder)
            rater_ids = list(expected)
        masks = np.zeros((len(rater_ids), *spatial), dtype=bool)
        valid = np.zeros(len(rater_ids), dtype=bool)
        for k, rid in enumerate(rater_ids):
            if rid in files:
                masks[k] = read_mask(files[rid], like_shape=spatial)
                valid[k] = True
        return MultiRaterSample(
            image=image, masks=masks, case_id=self.case_ids[i], spacing=spacing, affine=affine,
            rater_valid=valid, rater_ids=rater_ids, patient_id=self.patient_ids[i],
            structure=entry.get("structure", self.meta.get("structure")),
            provenance={"path": str(folder), "format": "canonical", "image": str(img_path)},
        )


@register_reader("canonical", detect, "one folder per case: image.* plus rater_<id>.* masks, optional dataset.json")
def read(path: str | Path, **options) -> CanonicalDataset:
    if options:
        raise DataError(f"the canonical reader takes no options, got {', '.join(sorted(options))}", path)
    path = Path(path)
    if not path.is_dir():
        raise DataError("canonical layout must be a folder", path)
    return CanonicalDataset(path)


# ------------------------------------------------------------------ writing
def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("._") or "case"


def _dump_json(doc: dict[str, Any]) -> str:
    """Readable but compact: top-level keys one per line, one line per case."""
    head = {k: v for k, v in doc.items() if k != "cases"}
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    cases = [f"  {json.dumps(k)}: {json.dumps(v, separators=(', ', ': '))}" for k, v in doc["cases"].items()]
    return "{\n" + "\n".join(lines) + '\n "cases": {\n' + ",\n".join(cases) + "\n }\n}\n"


def _auto_image_format(s: MultiRaterSample) -> str:
    """Lossless default: PNG for 2-D 1/3-channel 8-bit images, NIfTI for grey
    volumes, NPY otherwise."""
    img = s.image
    if s.spatial_ndim == 2:
        if img.shape[0] in (1, 3) and img.min() >= 0 and img.max() <= 255 and np.array_equal(img, np.round(img)):
            return "png"
        return "npy"
    return "nii.gz" if img.shape[0] == 1 else "npy"


def write_canonical(
    data: Dataset | Iterable[MultiRaterSample],
    dst: str | Path,
    mask_format: str | None = None,
    image_format: str | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    modality: str | None = None,
    licence: str | None = None,
    progress: bool = False,
) -> Path:
    """Write samples as a canonical folder at ``dst`` (which must not exist).

    All-or-nothing: everything goes to a temporary folder beside ``dst`` that is
    renamed at the end; on any error nothing is left behind. (Files inside are
    not fsynced one by one: the single rename is the commit point.)

    Args:
        data: a :class:`Dataset` or any iterable of samples.
        mask_format: ``"png"`` (2-D only), ``"nii.gz"``, ``"nii"`` or ``"npy"``;
            default ``png`` for 2-D samples and ``nii.gz`` for 3-D.
        image_format: ``"png"``, ``"jpg"`` (lossy), ``"npy"``, ``"nii"``,
            ``"nii.gz"``; default: lossless per sample (PNG for 8-bit 2-D images
            with 1 or 3 channels, ``nii.gz`` for grey volumes, ``npy`` otherwise).

    Spacing, affine (``null`` when the sample has none), patient id, structure and
    the full rater id list of each case go to ``dataset.json``; raters with
    ``rater_valid=False`` get no file, so they load back as missing (invalid),
    not as empty.
    """
    from tqdm import tqdm

    from clinloop.atomic import atomic_dir
    from clinloop.data.io import write_image, write_mask

    mask_formats = ("png", "nii.gz", "nii", "npy")
    image_formats = ("png", "jpg", "npy", "nii", "nii.gz")
    if mask_format is not None and mask_format not in mask_formats:
        raise ValueError(f"mask format {mask_format!r} not one of {', '.join(mask_formats)}")
    if image_format is not None and image_format not in image_formats:
        raise ValueError(f"image format {image_format!r} not one of {', '.join(image_formats)}")
    dst = Path(dst)
    if dst.exists():
        raise DataError("destination already exists; refusing to overwrite", dst)
    src_name = getattr(data, "name", None)
    total = len(data) if hasattr(data, "__len__") else None
    cases: dict[str, Any] = {}
    used: set[str] = set()
    with atomic_dir(dst) as tmp:
        for s in tqdm(data, total=total, desc="writing", unit="case", disable=not progress):
            folder = _safe_name(s.case_id)
            if folder in used:
                raise DataError(f"two cases map to the folder name {folder!r} (case id {s.case_id!r})", dst)
            used.add(folder)
            for rid in s.rater_ids:
                if not _SAFE_ID.match(rid):
                    raise DataError(f"rater id {rid!r} of case {s.case_id!r} cannot be a file name "
                                    "(letters, digits, _ and - only)", dst)
            mf = mask_format or ("png" if s.spatial_ndim == 2 else "nii.gz")
            if mf == "png" and s.spatial_ndim != 2:
                raise DataError(f"case {s.case_id!r} is 3-D; PNG masks are 2-D only (use --mask-format nii.gz or npy)", dst)
            imf = image_format or _auto_image_format(s)
            if imf in ("png", "jpg") and s.spatial_ndim != 2:
                raise DataError(f"case {s.case_id!r} is a 3-D volume {s.spatial_shape}; {imf} cannot hold 3-D volumes "
                                "(use --image-format nii.gz or npy)", dst)
            cdir = tmp / folder
            cdir.mkdir()
            write_image(cdir / f"image.{imf}", s.image, affine=s.affine, spacing=s.spacing, atomic=False)
            for m, rid, ok in zip(s.masks, s.rater_ids, s.rater_valid):
                if ok:
                    write_mask(cdir / f"rater_{rid}.{mf}", m, affine=s.affine, spacing=s.spacing, atomic=False)
            entry: dict[str, Any] = {"raters": list(s.rater_ids), "spacing": list(s.spacing),
                                     "affine": None if s.affine is None else np.asarray(s.affine).tolist()}
            if folder != s.case_id:
                entry["case_id"] = s.case_id
            if s.patient_id != s.case_id:
                entry["patient_id"] = s.patient_id
            if s.structure is not None:
                entry["structure"] = s.structure
            cases[folder] = entry
        if not cases:
            raise DataError("nothing to write: the dataset has no cases", dst)
        doc: dict[str, Any] = {"clinloop_canonical": SCHEMA_VERSION, "name": name or src_name or dst.name}
        for k, v in (("description", description), ("modality", modality), ("licence", licence)):
            if v is not None:
                doc[k] = v
        doc["cases"] = cases
        validate_dataset_json(doc, dst / "dataset.json")
        (tmp / "dataset.json").write_text(_dump_json(doc), encoding="utf-8")
    return dst


__all__ = ["CanonicalDataset", "read", "detect", "write_canonical", "validate_dataset_json", "SCHEMA_VERSION"]
