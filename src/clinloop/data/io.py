"""Reading and writing single images and masks in the common medical formats.

Every reader returns clinloop's axis order (see :mod:`clinloop.data.sample`):

* images: float32 channels-first ``(C, H, W)`` or ``(C, D, H, W)``;
* masks: bool ``(H, W)`` or ``(D, H, W)``;
* ``spacing``: one value per *spatial* axis, in array-axis order (mm when the
  file says so, ``1.0`` when it does not — ``meta["spacing_known"]`` tells);
* ``affine``: 4x4 map from clinloop voxel indices (``(d, h, w)`` in 3-D,
  ``(h, w, 0)`` in 2-D) to world RAS+ millimetres, or ``None`` when the format
  has no geometry (PNG, JPEG, NPY).

Format rules
------------
PNG / JPEG
    Grey (``L``, ``I;16``, ``I``, ``F``, ``1``) -> 1 channel; ``LA`` -> 1 channel
    (alpha dropped); ``RGB``/``RGBA``/``P``/``CMYK``/... -> 3 channels (alpha
    dropped). Intensities are kept as stored (0..255, or 0..65535 for 16-bit).
NPY
    A 2-D array is one grey image ``(H, W) -> (1, H, W)``; a 3-D array is one grey
    volume ``(D, H, W) -> (1, D, H, W)``. Colour / multi-channel arrays must be
    stored channels-first and read with ``channels_first=True``: then a 3-D array
    is ``(C, H, W)`` and a 4-D array ``(C, D, H, W)``. Channels-last ``(H, W, 3)``
    is never guessed. Other ranks are errors.
NIfTI (``.nii``, ``.nii.gz``)
    nibabel returns voxel index order ``(i, j, k)``; clinloop stores the
    *reversed* order, ``(k, j, i)`` = ``(D, H, W)`` (2-D: ``(j, i)`` = ``(H, W)``),
    so ``i`` (the fastest axis on disk) is the image column. Spacing is the header
    zooms reversed; the affine's first three columns are permuted the same way so
    it still maps clinloop indices to world. :func:`write_mask` /
    :func:`write_image` apply the inverse, so a round trip is exact. Trailing
    singleton axes beyond the third are squeezed; real 4-D data is an error here
    (channels-last 4-D volumes, as the Decathlon stores them:
    :func:`clinloop.data.nifti.read_nifti_volume`).
    A ``(X, Y, 1)`` file stays a one-slice volume ``(1, 1, Y, X)``; store 2-D
    images as 2-D NIfTI.
DICOM single file
    ``pixel_array * RescaleSlope + RescaleIntercept`` (CT -> Hounsfield units);
    spacing from ``PixelSpacing`` (row, column). Multi-frame files become a
    volume. The affine comes from ``ImagePositionPatient`` /
    ``ImageOrientationPatient`` when present (LPS converted to RAS).
DICOM series (a folder)
    Every file with a DICOM header is read (other files, e.g. XML annotations,
    are skipped); slices are sorted by ``ImagePositionPatient`` projected on the
    slice normal (``row_cosine x col_cosine``), falling back to
    ``InstanceNumber``. The slice spacing is the median gap between sorted
    positions; the affine's slice column is the mean step between first and
    last position. One folder must hold one series.

Masks (:func:`read_mask`) are PNG, NPY or NIfTI and must be binary: ``0/1`` (or
``False/True``) for every format, and additionally ``0/255`` for PNG (the common
"visible" PNG mask; :func:`write_mask` writes PNG masks as ``0/255``).

Every failure raises :class:`~clinloop.errors.DataError` naming the file and the
problem: missing files, truncated or corrupt files, unsupported ranks,
NaN/Inf, empty arrays, non-binary masks, shape mismatches.

Modules: this one reads (:func:`read_image`, :func:`read_mask`) and re-exports
everything; :mod:`clinloop.data.io_base` (suffixes, checks, PNG/JPEG/NPY),
:mod:`clinloop.data.nifti`, :mod:`clinloop.data.dicom` and
:mod:`clinloop.data.writers` (:func:`write_image`, :func:`write_mask`) hold the rest.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from clinloop.data.dicom import _LPS_TO_RAS, _dcmread, _dicom_geometry, _dicom_pixels, _read_dicom_file, _read_dicom_series
from clinloop.data.io_base import (
    IMAGE_SUFFIXES,
    MASK_SUFFIXES,
    _binary,
    _check_array,
    _exists,
    _read_npy,
    _read_pil,
    file_suffix,
    is_dicom_file,
    is_dicom_series_dir,
)
from clinloop.data.nifti import _clinloop_to_nib_affine, _nib_to_clinloop_affine, _nifti_affine, _read_nifti, _write_nifti
from clinloop.data.writers import _target, write_image, write_mask
from clinloop.errors import DataError


def read_image(path: str | Path, *, channels_first: bool = False):
    """Read one image or volume.

    Args:
        path: ``.png``, ``.jpg``/``.jpeg``, ``.npy``, ``.nii``, ``.nii.gz``,
            ``.dcm`` (or any file with the DICOM magic), or a folder holding one
            DICOM series.
        channels_first: for ``.npy`` only: the array is ``(C, H, W)`` or
            ``(C, D, H, W)`` rather than a single-channel ``(H, W)`` / ``(D, H, W)``.

    Returns:
        ``(image, spacing, affine, meta)``: ``image`` float32 ``(C, H, W)`` or
        ``(C, D, H, W)``; ``spacing`` a tuple over spatial axes; ``affine`` 4x4 or
        ``None``; ``meta`` a dict with at least ``format`` and ``spacing_known``.
    """
    path = Path(path)
    _exists(path)
    suf = file_suffix(path)
    if path.is_dir():
        if not is_dicom_series_dir(path):
            raise DataError("folder is not a DICOM series (no DICOM files inside)", path)
        arr, spacing, affine, meta = _read_dicom_series(path)
    elif suf in (".png", ".jpg", ".jpeg"):
        arr, meta = _read_pil(path)
        spacing, affine = (1.0, 1.0), None
        meta["spacing_known"] = False
    elif suf == ".npy":
        raw = _check_array(_read_npy(path), path)  # shapes in messages are the file's
        if channels_first:
            if raw.ndim not in (3, 4):
                raise DataError(f"channels-first .npy must be (C,H,W) or (C,D,H,W), got shape {raw.shape}", path)
            arr = raw
        else:
            if raw.ndim not in (2, 3):
                raise DataError(
                    f".npy image must be (H,W) or (D,H,W), got shape {raw.shape} "
                    "(store colour/multi-channel arrays channels-first and pass channels_first=True)", path)
            arr = raw[None]
        spacing, affine = (1.0,) * (arr.ndim - 1), None
        meta = {"format": "npy", "spacing_known": False}
    elif suf in (".nii", ".nii.gz"):
        data, spacing, affine, meta = _read_nifti(path)
        arr = data[None]
        meta["spacing_known"] = True
    elif suf == ".dcm" or is_dicom_file(path):
        arr, spacing, affine, meta = _read_dicom_file(path)
    else:
        raise DataError(f"unsupported image type {suf or '(no suffix)'}; expected one of "
                        f"{', '.join(IMAGE_SUFFIXES)} or a DICOM series folder", path)
    _check_array(arr, path)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    img = arr.astype(np.float32)
    if not np.isfinite(img).all():  # e.g. float64 values beyond float32 range
        raise DataError(f"image has {int((~np.isfinite(img)).sum())} NaN/Inf values", path)
    meta["path"] = str(path)
    return img, tuple(float(s) for s in spacing), affine, meta


def read_mask(path: str | Path, like_shape: Sequence[int] | None = None) -> np.ndarray:
    """Read a binary mask as bool ``(H, W)`` or ``(D, H, W)`` (clinloop order).

    PNG masks may be ``0/1`` or ``0/255`` (greyscale; an RGB PNG is accepted only
    when its three channels are equal); NPY and NIfTI masks must be ``0/1`` (any
    integer, float or bool dtype). ``like_shape`` (the image's spatial shape), when
    given, must match exactly.
    """
    path = Path(path)
    _exists(path)
    suf = file_suffix(path)
    if path.is_dir():
        raise DataError("a mask must be a file, not a folder", path)
    if suf == ".png":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im.load()
                arr = np.asarray(im.convert("L") if im.mode == "P" else im)
        except (OSError, SyntaxError, UnidentifiedImageError, ValueError) as e:
            raise DataError(f"cannot decode mask ({type(e).__name__}: {e})", path) from None
        if arr.ndim == 3:
            if not all((arr[..., c] == arr[..., 0]).all() for c in range(1, min(arr.shape[-1], 3))):
                raise DataError(f"mask PNG has {arr.shape[-1]} differing colour channels; save it greyscale", path)
            arr = arr[..., 0]
        allow_255 = True
    elif suf == ".npy":
        arr = _read_npy(path)
        allow_255 = False
    elif suf in (".nii", ".nii.gz"):
        arr = _read_nifti(path)[0]
        allow_255 = False
    else:
        raise DataError(f"unsupported mask type {suf or '(no suffix)'}; expected one of {', '.join(MASK_SUFFIXES)}", path)
    if arr.ndim not in (2, 3):
        raise DataError(f"mask must be 2-D (H,W) or 3-D (D,H,W), got shape {arr.shape}", path)
    _check_array(arr, path, "mask")
    m = _binary(arr, path, allow_255)
    if like_shape is not None and tuple(m.shape) != tuple(like_shape):
        raise DataError(f"mask shape {tuple(m.shape)} does not match the image's spatial shape {tuple(like_shape)}", path)
    return np.ascontiguousarray(m)


__all__ = ["IMAGE_SUFFIXES", "MASK_SUFFIXES", "file_suffix", "is_dicom_file", "is_dicom_series_dir",
           "read_image", "read_mask", "write_image", "write_mask"]
# re-exported private helpers (older callers imported them from here)
_REEXPORTED = (_LPS_TO_RAS, _dcmread, _dicom_geometry, _dicom_pixels, _clinloop_to_nib_affine,
               _nib_to_clinloop_affine, _nifti_affine, _write_nifti, _target)
