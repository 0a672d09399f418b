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
    singleton axes beyond the third are squeezed; real 4-D data is an error.
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
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from clinloop.atomic import atomic_path
from clinloop.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy", ".nii", ".nii.gz", ".dcm")
MASK_SUFFIXES = (".png", ".npy", ".nii", ".nii.gz")

# LPS (DICOM) -> RAS (nibabel, clinloop) flips the first two world axes
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


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


# ---------------------------------------------------------------------- NIfTI
def _nib_to_clinloop_affine(aff: np.ndarray, ndim: int) -> np.ndarray:
    """Permute the index columns of a nibabel affine ((i,j,k) indices) so it maps
    clinloop's reversed index order: 3-D (k,j,i), 2-D (j,i,0)."""
    aff = np.asarray(aff, dtype=np.float64).copy()
    perm = [2, 1, 0] if ndim == 3 else [1, 0, 2]
    out = aff.copy()
    out[:3, :3] = aff[:3, perm]
    return out


def _clinloop_to_nib_affine(aff: np.ndarray, ndim: int) -> np.ndarray:
    # both permutations are their own inverse
    return _nib_to_clinloop_affine(aff, ndim)


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...], np.ndarray, dict[str, Any]]:
    """Spatial array in clinloop order, spacing, clinloop affine, meta."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as e:  # nibabel raises many types (ImageFileError, EOFError, zlib.error, ...)
        raise DataError(f"cannot read NIfTI ({type(e).__name__}: {e})", path) from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise DataError(f"NIfTI must be 2-D or 3-D, got shape {data.shape}", path)
    # zooms are float32 on disk: 7 significant digits give back the written value
    zooms = [float(f"{float(z):.7g}") for z in img.header.get_zooms()[: data.ndim]]
    zooms = [z if z > 0 else 1.0 for z in zooms]
    arr = np.ascontiguousarray(data.T)  # (i,j,k) -> (k,j,i)
    return arr, tuple(reversed(zooms)), _nib_to_clinloop_affine(img.affine, data.ndim), {"format": "nifti"}


# ---------------------------------------------------------------------- DICOM
def _dcmread(path: Path, stop_before_pixels: bool = False):
    import pydicom

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels)
    except Exception as e:  # InvalidDicomError, EOFError, struct.error, ...
        raise DataError(f"cannot read DICOM ({type(e).__name__}: {e})", path) from None


def _dicom_pixels(ds, path: Path) -> np.ndarray:
    """Pixel data rescaled to physical units (HU for CT), float32."""
    if "PixelData" not in ds:
        raise DataError("DICOM file has no pixel data", path)
    try:
        px = ds.pixel_array
    except Exception as e:  # truncated pixel data, missing decoder, ...
        raise DataError(f"cannot decode DICOM pixel data ({type(e).__name__}: {e})", path) from None
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    return px.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def _dicom_geometry(ds) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, tuple[float, float], bool]:
    """(row_cosine, col_cosine, position, (row_spacing, col_spacing), known)."""
    ps = getattr(ds, "PixelSpacing", None)
    known = ps is not None and len(ps) == 2
    spacing = (float(ps[0]), float(ps[1])) if known else (1.0, 1.0)
    iop = getattr(ds, "ImageOrientationPatient", None)
    ipp = getattr(ds, "ImagePositionPatient", None)
    if iop is None or len(iop) != 6 or ipp is None or len(ipp) != 3:
        return None, None, None, spacing, known
    x = np.array([float(v) for v in iop[:3]])  # direction of increasing column
    y = np.array([float(v) for v in iop[3:]])  # direction of increasing row
    return x, y, np.array([float(v) for v in ipp]), spacing, known


def _read_dicom_file(path: Path) -> tuple[np.ndarray, tuple[float, ...], np.ndarray | None, dict[str, Any]]:
    ds = _dcmread(path)
    px = _dicom_pixels(ds, path)
    spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    x, y, pos, (dr, dc), known = _dicom_geometry(ds)
    meta = {"format": "dicom", "modality": str(getattr(ds, "Modality", "")), "spacing_known": known}
    if spp > 1:  # colour: (H,W,3) or (F,H,W,3) -> channels first
        px = np.moveaxis(px, -1, 0)
    else:
        px = px[None]
    if frames > 1:
        dz = float(getattr(ds, "SpacingBetweenSlices", 0) or getattr(ds, "SliceThickness", 0) or 1.0)
        spacing: tuple[float, ...] = (dz, dr, dc)
        affine = None
        if x is not None:
            n = np.cross(x, y)
            affine = np.eye(4)
            affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = n * dz, y * dr, x * dc, pos
            affine = _LPS_TO_RAS @ affine
    else:
        spacing = (dr, dc)
        affine = None
        if x is not None:
            thick = float(getattr(ds, "SliceThickness", 0) or 1.0)
            affine = np.eye(4)
            affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = y * dr, x * dc, np.cross(x, y) * thick, pos
            affine = _LPS_TO_RAS @ affine
    return px, spacing, affine, meta


def _read_dicom_series(folder: Path) -> tuple[np.ndarray, tuple[float, ...], np.ndarray | None, dict[str, Any]]:
    files = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".") and is_dicom_file(p)]
    if not files:
        raise DataError("folder contains no DICOM files", folder)
    headers = [(p, _dcmread(p)) for p in files]
    headers = [(p, ds) for p, ds in headers if "PixelData" in ds]  # skip DICOMDIR, SR, ...
    if not headers:
        raise DataError("DICOM folder has no image slices (no pixel data)", folder)
    uids = sorted({str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in headers})
    if len(uids) > 1:
        raise DataError(f"folder holds {len(uids)} DICOM series ({', '.join(u or '?' for u in uids)}); "
                        "put each series in its own folder", folder)
    geo = [_dicom_geometry(ds) for _, ds in headers]
    use_pos = all(g[0] is not None for g in geo)
    if use_pos:
        normal = np.cross(geo[0][0], geo[0][1])
        keys = [float(np.dot(g[2], normal)) for g in geo]
        order = np.argsort(keys, kind="stable")
        sorted_by = "ImagePositionPatient"
    else:
        inst = [getattr(ds, "InstanceNumber", None) for _, ds in headers]
        if any(i is None for i in inst):
            missing = [str(p.name) for (p, _), i in zip(headers, inst) if i is None][:3]
            raise DataError(f"cannot order slices: no ImagePositionPatient/ImageOrientationPatient and "
                            f"no InstanceNumber in {', '.join(missing)}", folder)
        keys = [float(i) for i in inst]
        order = np.argsort(keys, kind="stable")
        sorted_by = "InstanceNumber"
    headers = [headers[i] for i in order]
    geo = [geo[i] for i in order]
    keys_sorted = np.array([keys[i] for i in order])
    slices = []
    for p, ds in headers:
        px = _dicom_pixels(ds, p)
        if px.ndim != 2:
            raise DataError(f"series slices must be single-frame grey images, got pixel shape {px.shape}", p)
        if slices and px.shape != slices[0].shape:
            raise DataError(f"slice shape {px.shape} differs from the series' {slices[0].shape}", p)
        slices.append(px)
    vol = np.stack(slices)[None]  # (1, D, H, W)
    dr, dc = geo[0][3]
    meta: dict[str, Any] = {"format": "dicom-series", "n_slices": len(slices), "sorted_by": sorted_by,
                            "modality": str(getattr(headers[0][1], "Modality", "")), "spacing_known": geo[0][4]}
    affine = None
    if use_pos and len(slices) > 1:
        gaps = np.diff(keys_sorted)
        if np.any(np.abs(gaps) < 1e-6):
            dup = headers[int(np.argmin(np.abs(gaps))) + 1][0].name
            raise DataError(f"two slices share one position (e.g. {dup}); the series has duplicate slices", folder)
        dz = float(np.median(gaps))
        if gaps.max() - gaps.min() > 0.01 * dz:
            meta["nonuniform_slice_spacing"] = [float(gaps.min()), float(gaps.max())]
        step = (geo[-1][2] - geo[0][2]) / (len(slices) - 1)
    else:
        ds0 = headers[0][1]
        dz = float(getattr(ds0, "SpacingBetweenSlices", 0) or getattr(ds0, "SliceThickness", 0) or 1.0)
        step = np.cross(geo[0][0], geo[0][1]) * dz if use_pos else None
    if use_pos:
        x, y, pos = geo[0][0], geo[0][1], geo[0][2]
        affine = np.eye(4)
        affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = step, y * dr, x * dc, pos
        affine = _LPS_TO_RAS @ affine
    return vol, (dz, dr, dc), affine, meta


# --------------------------------------------------------------- public API
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


def _nifti_affine(ndim: int, affine: np.ndarray | None, spacing: Sequence[float] | None) -> np.ndarray:
    if affine is not None:
        aff = np.asarray(affine, dtype=np.float64)
        if aff.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {aff.shape}")
        return _clinloop_to_nib_affine(aff, ndim)
    sp = list(spacing) if spacing is not None else [1.0] * ndim
    if len(sp) != ndim:
        raise ValueError(f"spacing {tuple(sp)} does not fit a {ndim}-D array")
    rev = list(reversed(sp)) + [1.0] * (3 - ndim)
    return np.diag(rev + [1.0])


def _write_nifti(tmp: Path, data: np.ndarray, affine, spacing) -> None:
    import nibabel as nib

    ndim = data.ndim
    img = nib.Nifti1Image(np.ascontiguousarray(data.T), _nifti_affine(ndim, affine, spacing))
    if spacing is not None and affine is None:
        img.header.set_zooms(tuple(reversed([float(s) for s in spacing])))
    nib.save(img, str(tmp))


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

