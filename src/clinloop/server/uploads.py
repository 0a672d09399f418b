"""Upload checks: size limits, the header's claimed size before decoding, and
decoding into a channels-first image (``read_upload``).

Every refusal is an :class:`fastapi.HTTPException` (400 unreadable, 413 too
large, 415 unknown type, 422 unusable shape) whose message never contains a
server path — the client's file name is shown instead.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import HTTPException

from clinloop.server.context import Limits
from clinloop.server.errors import fail

UPLOAD_SUFFIXES = (".png", ".jpg", ".jpeg", ".nii", ".nii.gz", ".dcm", ".npy")
SEED_LIMIT = 2 ** 31  # seeds are 0 <= seed < 2**31 (numpy/torch generators take them all; volumes derive slice seeds)


def check_image(img: np.ndarray, where: str, limits: Limits, too_large: int = 413) -> None:
    """Refuse a decoded channels-first image the server cannot segment (422; ``too_large``
    (413 for an upload, 422 for a worklist case) beyond ``limits.max_voxels``)."""
    sp = img.shape[1:]
    if img.ndim not in (3, 4):
        fail(422, f"{where}: image must be 2-D or 3-D, got spatial shape {sp}")
    if img.size > limits.max_voxels:
        fail(too_large, f"{where}: image of {img.size} values ({'x'.join(map(str, sp))}) exceeds the server's "
             f"limit of {limits.max_voxels} (clinloop serve --max-voxels)")
    if min(sp[-2:]) < limits.min_side or max(sp) > limits.max_side:  # a volume may have few slices
        fail(422, f"{where}: image size {sp} is outside {limits.min_side}..{limits.max_side} pixels per axis")
    if img.ndim == 4 and img.shape[0] != 1:
        fail(422, f"{where}: multi-channel volumes are not supported (shape {img.shape})")


def header_values(path: Path, suffix: str) -> int:
    """Number of values the file's *header* claims (before decoding any pixel)."""
    if suffix in (".png", ".jpg", ".jpeg"):
        from PIL import Image

        with Image.open(path) as im:
            return im.size[0] * im.size[1] * max(len(im.getbands()), 1)
    if suffix in (".nii", ".nii.gz"):
        import nibabel as nib

        return int(np.prod(nib.load(str(path)).shape))
    if suffix == ".npy":
        with open(path, "rb") as f:
            v = np.lib.format.read_magic(f)
            shape = (np.lib.format.read_array_header_1_0 if v == (1, 0) else np.lib.format.read_array_header_2_0)(f)[0]
        return int(np.prod(shape))
    import pydicom

    ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    return int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0) * int(ds.get("NumberOfFrames", 1) or 1) \
        * int(ds.get("SamplesPerPixel", 1) or 1)


def precheck(path: Path, suffix: str, limits: Limits) -> None:
    """Refuse images whose header already claims too many voxels (413) or cannot be read (400)."""
    from PIL import Image

    try:
        n = header_values(path, suffix)
    except Image.DecompressionBombError as e:  # PIL refuses the claimed size before we can count it
        fail(413, f"uploaded image exceeds the limit of {limits.max_voxels} values ({e})")
    except Exception as e:  # noqa: BLE001 - any header failure is corrupt input
        fail(400, f"cannot read the uploaded {suffix} file ({type(e).__name__}: {e})")
    if n > limits.max_voxels:
        fail(413, f"uploaded image of {n} values exceeds the limit of {limits.max_voxels}")


def sniff_suffix(data: bytes, filename: str) -> str:
    """The upload's type from its name, else from its magic bytes (415 when neither is known)."""
    from clinloop.data.io import file_suffix

    suffix = file_suffix(filename or "")
    if suffix in UPLOAD_SUFFIXES:
        return suffix
    if len(data) >= 132 and data[128:132] == b"DICM":
        return ".dcm"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    fail(415, f"unsupported upload {filename!r}; send one of {', '.join(UPLOAD_SUFFIXES)}")


def read_upload(data: bytes, filename: str, limits: Limits, tmp_root: Path) -> tuple[np.ndarray, dict[str, Any], str]:
    """Decode an uploaded file -> (channels-first image, meta, suffix). The
    bytes are written under ``tmp_root`` with a fixed name (the client's file
    name never becomes a path) and removed afterwards."""
    from clinloop.data.io import read_image

    suffix = sniff_suffix(data, filename)
    if not data:
        fail(400, "the uploaded file is empty")
    with tempfile.TemporaryDirectory(dir=tmp_root) as d:
        path = Path(d) / f"upload{suffix}"
        path.write_bytes(data)
        shown = Path(filename or "upload").name[:200] or "upload"
        try:
            precheck(path, suffix, limits)
            img, spacing, affine, meta = read_image(path)
        except HTTPException as e:  # never show server paths in messages
            raise HTTPException(e.status_code, str(e.detail).replace(str(path), shown)) from None
        except ValueError as e:
            fail(400, str(e).replace(str(path), shown))
    meta.pop("path", None)
    meta.update(spacing=list(spacing), affine=None if affine is None else np.asarray(affine).tolist(),
                source="upload", filename=Path(filename or "").name[:200])
    return img, meta, suffix


def form_structure(value: Any) -> str | None:
    """The optional ``structure`` form field (what the upload shows, e.g. "nodule"): stripped, at most
    128 printable characters; ``None`` when empty (422 otherwise)."""
    if value is None:
        return None
    if not isinstance(value, str):
        fail(400, "'structure' must be a text field")
    text = value.strip()
    if len(text) > 128 or not text.isprintable():
        fail(422, f"structure must be at most 128 printable characters; got {text[:40]!r}")
    return text or None


def form_bool(value: Any, name: str, default: bool) -> bool:
    """A yes/no form field (true/false, 1/0, yes/no, on/off; absent: ``default``); 422 otherwise."""
    if value is None:
        return default
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    fail(422, f"{name} must be true or false; got {str(value)[:40]!r}")


def form_seed(value: Any) -> int:
    """The ``seed`` form field as an int in ``0 <= seed < 2**31`` (422 otherwise)."""
    try:
        seed = int(str(value).strip())
    except (TypeError, ValueError):
        fail(422, f"seed must be an integer 0 <= seed < 2**31; got {str(value)[:40]!r}")
    if not 0 <= seed < SEED_LIMIT:
        fail(422, f"seed must be 0 <= seed < 2**31; got {seed}")
    return seed
