"""Writing masks and images atomically (inverse of :mod:`clinloop.data.io`'s readers)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from clinloop.atomic import atomic_path
from clinloop.data.io_base import MASK_SUFFIXES, _binary, file_suffix
from clinloop.data.nifti import _write_nifti

def _target(path: Path, atomic: bool):
    """``atomic_path`` or, inside an already-atomic folder write, the path itself."""
    import contextlib

    if atomic:
        return atomic_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(path)


def write_mask(path: str | Path, mask: np.ndarray, affine: np.ndarray | None = None,
               spacing: Sequence[float] | None = None, *, atomic: bool = True) -> Path:
    """Write a bool mask ``(H, W)`` or ``(D, H, W)`` atomically.

    ``.png`` (2-D only, written ``0/255`` 8-bit grey), ``.npy`` (bool),
    ``.nii``/``.nii.gz`` (uint8 0/1; ``affine`` in clinloop index order, else a
    diagonal affine from ``spacing``). Returns the path. ``atomic=False`` skips the
    temporary file and fsync (for writers that fill a folder made atomic as a
    whole by :func:`clinloop.atomic.atomic_dir`).
    """
    path = Path(path)
    m = np.asarray(mask)
    if m.ndim not in (2, 3) or m.size == 0:
        raise ValueError(f"{path}: mask must be a non-empty (H,W) or (D,H,W) array, got shape {m.shape}")
    m = _binary(m, path, allow_255=False) if m.dtype != bool else m
    suf = file_suffix(path)
    if suf == ".png":
        if m.ndim != 2:
            raise ValueError(f"{path}: PNG holds 2-D masks only, got shape {m.shape}; use .nii.gz or .npy")
        from PIL import Image

        with _target(path, atomic) as tmp:
            Image.fromarray(m.astype(np.uint8) * 255, mode="L").save(tmp, format="PNG")
    elif suf == ".npy":
        with _target(path, atomic) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, m.astype(bool))
    elif suf in (".nii", ".nii.gz"):
        with _target(path, atomic) as tmp:
            _write_nifti(tmp, m.astype(np.uint8), affine, spacing)
    else:
        raise ValueError(f"{path}: unsupported mask type {suf!r}; use one of {', '.join(MASK_SUFFIXES)}")
    return path


def write_image(path: str | Path, image: np.ndarray, affine: np.ndarray | None = None,
                spacing: Sequence[float] | None = None, *, atomic: bool = True) -> Path:
    """Write a channels-first image atomically, so that :func:`read_image` gives
    it back (``.npy`` read back with ``channels_first=True``).

    ``.png``: 2-D, 1 or 3 channels, integer values in 0..255 (or 0..65535 for one
    channel, written 16-bit) — anything else raises rather than losing values.
    ``.jpg``: as PNG but 8-bit only, and lossy. ``.npy``: the float32 array as is
    (channels first). ``.nii``/``.nii.gz``: one channel only, float32.
    ``atomic`` as in :func:`write_mask`.
    """
    path = Path(path)
    img = np.asarray(image, dtype=np.float32)
    if img.ndim not in (3, 4) or img.size == 0:
        raise ValueError(f"{path}: image must be non-empty (C,H,W) or (C,D,H,W), got shape {img.shape}")
    if not np.isfinite(img).all():
        raise ValueError(f"{path}: image has NaN/Inf values")
    suf = file_suffix(path)
    if suf in (".png", ".jpg", ".jpeg"):
        if img.ndim != 3 or img.shape[0] not in (1, 3):
            raise ValueError(f"{path}: {suf} holds 2-D images with 1 or 3 channels, got shape {img.shape}")
        if not np.array_equal(img, np.round(img)) or img.min() < 0:
            raise ValueError(f"{path}: {suf} needs non-negative integer intensities; use .npy or .nii.gz")
        top = 65535 if (suf == ".png" and img.shape[0] == 1) else 255
        if img.max() > top:
            raise ValueError(f"{path}: intensities up to {img.max():g} do not fit {suf} (max {top})")
        from PIL import Image

        if img.shape[0] == 1:
            a = img[0]
            pil = Image.fromarray(a.astype(np.uint8), mode="L") if a.max() <= 255 else Image.fromarray(a.astype(np.uint16))
        else:
            pil = Image.fromarray(np.moveaxis(img, 0, -1).astype(np.uint8), mode="RGB")
        with _target(path, atomic) as tmp:
            pil.save(tmp, format="PNG" if suf == ".png" else "JPEG", **({"quality": 95} if suf != ".png" else {}))
    elif suf == ".npy":
        with _target(path, atomic) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, img)
    elif suf in (".nii", ".nii.gz"):
        if img.shape[0] != 1:
            raise ValueError(f"{path}: NIfTI images here are single-channel, got {img.shape[0]} channels; use .npy")
        with _target(path, atomic) as tmp:
            _write_nifti(tmp, img[0], affine, spacing)
    else:
        raise ValueError(f"{path}: unsupported image type {suf!r}; use .png, .jpg, .npy, .nii or .nii.gz")
    return path
