"""NIfTI in clinloop's axis order (rules in :mod:`clinloop.data.io`): nibabel's
voxel order ``(i, j, k)`` is stored reversed, ``(k, j, i)`` = ``(D, H, W)``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from clinloop.errors import DataError


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


def _zooms(img, ndim: int) -> list[float]:
    # zooms are float32 on disk: 7 significant digits give back the written value
    zooms = [float(f"{float(z):.7g}") for z in img.header.get_zooms()[:ndim]]
    return [z if z > 0 else 1.0 for z in zooms]


def _load(path: Path, data: bool = True):
    """(nibabel image, voxel array or None); any nibabel failure -> DataError."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        return img, (np.asarray(img.dataobj) if data else None)
    except Exception as e:  # nibabel raises many types (ImageFileError, EOFError, zlib.error, ...)
        raise DataError(f"cannot read NIfTI ({type(e).__name__}: {e})", path) from None


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...], np.ndarray, dict[str, Any]]:
    """Spatial array in clinloop order, spacing, clinloop affine, meta."""
    img, data = _load(path)
    while data.ndim > 2 and data.shape[-1] == 1:  # (X, Y, 1[, 1]): a 2-D image (one slice is no volume)
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise DataError(f"NIfTI must be 2-D or 3-D, got shape {data.shape}", path)
    zooms = _zooms(img, data.ndim)
    arr = np.ascontiguousarray(data.T)  # (i,j,k) -> (k,j,i)
    return arr, tuple(reversed(zooms)), _nib_to_clinloop_affine(img.affine, data.ndim), {"format": "nifti"}


# ------------------------------------------------ multi-channel volumes, labels
def _volume_shape(shape: tuple[int, ...], path: Path) -> tuple[int, int]:
    """(spatial rank 3, channels) of a 3-D or channels-last 4-D file shape; axes
    of length 1 beyond the fourth (NIfTI's time axis before the vector axis)
    are ignored."""
    shape = tuple(shape[:3]) + tuple(n for n in shape[3:] if n != 1)
    if len(shape) == 3:
        return 3, 1
    if len(shape) == 4:
        return 3, int(shape[3])
    raise DataError(f"expected a 3-D volume (X,Y,Z) or a channels-last 4-D one (X,Y,Z,C), got shape {shape}", path)


def nifti_header(path: str | Path) -> dict[str, Any]:
    """Geometry of a 3-D / channels-last 4-D NIfTI from its header alone (no
    voxel data is read): ``shape`` ``(C, D, H, W)`` in clinloop order,
    ``spacing`` ``(dz, dy, dx)``, ``affine`` (clinloop index order), ``dtype``."""
    path = Path(path)
    img, _ = _load(path, data=False)
    _, c = _volume_shape(tuple(img.shape), path)
    x, y, z = img.shape[:3]
    return {"shape": (c, z, y, x), "spacing": tuple(reversed(_zooms(img, 3))),
            "affine": _nib_to_clinloop_affine(img.affine, 3), "dtype": str(img.get_data_dtype())}


def read_nifti_volume(path: str | Path) -> tuple[np.ndarray, tuple[float, ...], np.ndarray, dict[str, Any]]:
    """A 3-D ``(X, Y, Z)`` or channels-last 4-D ``(X, Y, Z, C)`` NIfTI (the
    Decathlon's multi-modal images) as float32 ``(C, D, H, W)`` = ``(C, Z, Y, X)``,
    with spacing ``(dz, dy, dx)``, the clinloop-order affine and meta.
    Intensities are scaled by the header's ``scl_slope``/``scl_inter``."""
    path = Path(path)
    img, data = _load(path)
    _, c = _volume_shape(data.shape, path)
    data = data.reshape(*data.shape[:3], c)
    if data.size == 0:
        raise DataError(f"image is empty (shape {data.shape})", path)
    arr = np.ascontiguousarray(np.transpose(data, (3, 2, 1, 0)), dtype=np.float32)
    if not np.isfinite(arr).all():
        raise DataError(f"image has {int((~np.isfinite(arr)).sum())} NaN/Inf values", path)
    meta = {"format": "nifti", "channels": c, "dtype": str(img.get_data_dtype())}
    return arr, tuple(reversed(_zooms(img, 3))), _nib_to_clinloop_affine(img.affine, 3), meta


def read_nifti_labels(path: str | Path) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """A 3-D label map (integer values, any stored dtype) as int64 ``(D, H, W)``,
    its spacing and clinloop-order affine. Non-integer, negative or NaN values
    are a :class:`DataError` naming the file."""
    path = Path(path)
    img, data = _load(path)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3 or data.size == 0:
        raise DataError(f"label map must be a non-empty 3-D volume (X,Y,Z), got shape {data.shape}", path)
    if data.dtype.kind == "f":
        bad = ~np.isfinite(data) | (data != np.round(data))
        if bad.any():
            v = data[bad].flat[0]
            raise DataError(f"label map has {int(bad.sum())} non-integer values (e.g. {v:g})", path)
    elif data.dtype.kind not in "biu":
        raise DataError(f"label map has unsupported dtype {data.dtype}", path)
    lab = data.astype(np.int64)
    if lab.min() < 0:
        raise DataError(f"label map has negative values (min {int(lab.min())})", path)
    return np.ascontiguousarray(lab.T), tuple(reversed(_zooms(img, 3))), _nib_to_clinloop_affine(img.affine, 3)


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
