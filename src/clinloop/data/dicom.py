"""DICOM single files and series folders (rules in :mod:`clinloop.data.io`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clinloop.data.io_base import is_dicom_file
from clinloop.errors import DataError

# LPS (DICOM) -> RAS (nibabel, clinloop) flips the first two world axes
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


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
