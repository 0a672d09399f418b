"""Shared pieces of :mod:`clinloop.data.io`: file-type tests, array checks, and
the PNG/JPEG and NPY decoders (the format rules are in :mod:`clinloop.data.io`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clinloop.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy", ".nii", ".nii.gz", ".dcm")
MASK_SUFFIXES = (".png", ".npy", ".nii", ".nii.gz")


def file_suffix(path: str | Path) -> str:
    """Lower-case suffix with ``.nii.gz`` kept whole (``"scan.NII.GZ"`` -> ``.nii.gz``)."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def is_dicom_file(path: str | Path) -> bool:
    """True when ``path`` carries the DICOM ``DICM`` magic at byte 128, or has a
    ``.dcm`` suffix."""
    path = Path(path)
    if not path.is_file():
        return False
    if file_suffix(path) == ".dcm":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_dicom_series_dir(path: str | Path) -> bool:
    """True for a folder that directly contains at least one DICOM file."""
    path = Path(path)
    if not path.is_dir():
        return False
    return any(is_dicom_file(p) for p in sorted(path.iterdir()) if not p.name.startswith("."))


# --------------------------------------------------------------------- checks
def _check_array(arr: np.ndarray, path: Path, what: str = "image") -> np.ndarray:
    if arr.size == 0 or 0 in arr.shape:
        raise DataError(f"{what} is empty (shape {tuple(arr.shape)})", path)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        n = int((~np.isfinite(arr)).sum())
        raise DataError(f"{what} has {n} NaN/Inf values", path)
    big = float(np.finfo(np.float32).max)
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4 and float(np.abs(arr).max()) > big:
        raise DataError(f"{what} has values up to {float(np.abs(arr).max()):.3g}, beyond float32's range "
                        f"(±{big:.3g}) in which images are processed; rescale it", path)
    return arr


def _exists(path: Path) -> None:
    if not path.exists():
        raise DataError("no such file or folder", path)


# --------------------------------------------------------------- PNG / JPEG
def _read_pil(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a PNG/JPEG fully (``load()`` so truncation is caught here)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("L", "I;16", "I;16B", "I;16L", "I", "F", "1"):
                arr = np.asarray(im)
                if mode == "1":
                    arr = arr.astype(np.uint8)
                arr = arr[None]
            elif mode == "LA":
                arr = np.asarray(im.convert("L"))[None]
            else:  # RGB, RGBA, P, CMYK, YCbCr, ...: 3 channels, alpha dropped
                arr = np.moveaxis(np.asarray(im.convert("RGB")), -1, 0)
    except (OSError, SyntaxError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"cannot decode image ({type(e).__name__}: {e})", path) from None
    return np.ascontiguousarray(arr), {"format": path.suffix.lower().lstrip("."), "mode": mode}


# ------------------------------------------------------------------------ NPY
def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"cannot read .npy array ({e})", path) from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise DataError(f"unsupported .npy content (dtype {getattr(arr, 'dtype', type(arr))})", path)
    return arr


def _binary(arr: np.ndarray, path: Path, allow_255: bool) -> np.ndarray:
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"mask has {int((~np.isfinite(arr)).sum())} NaN/Inf values", path)
    vals = np.unique(arr)
    allowed = (0, 1)
    if np.isin(vals, allowed).all():
        return arr == 1
    if allow_255 and np.isin(vals, (0, 255)).all():
        return arr == 255
    shown = ", ".join(f"{v:g}" for v in vals[:8]) + (" ..." if vals.size > 8 else "")
    hint = "0/1 or 0/255" if allow_255 else "0/1"
    raise DataError(f"mask is not binary: values {shown} (expected {hint})", path)
