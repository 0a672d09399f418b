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
