"""Checked access to ``.npz`` archives for the dataset readers.

``np.load`` on an npz gives no memory map, hides corrupt members until they are
read, and reports problems without the file name. These helpers:

* :func:`npz_members` — member names from the zip directory only (cheap; used by
  format detection);
* :func:`npz_headers` — each member's shape and dtype from its ``.npy`` header,
  without decompressing the data;
* :func:`read_member` — one member, with truncation / corruption turned into a
  :class:`DataError` that names the file and the key;
* :func:`read_bool_packed` — a large 0/1 member read in row chunks and kept
  bit-packed along the last axis (8x smaller in memory; LIDC's masks are
  ~400 MB as bool, ~50 MB packed);
* :class:`ArrayCache` — the arrays of one file, read once and shared by every
  dataset open on that file (e.g. LIDC slices and LIDC volumes, or train and
  validation opened separately), freed when the last such dataset goes.
"""
from __future__ import annotations

import os
import weakref
import zipfile
import zlib
from pathlib import Path

import numpy as np

from clinloop.errors import DataError

_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError)


def _read_header(f, version):
    """(shape, fortran_order, dtype) of an open ``.npy`` stream after its magic."""
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def npz_members(path: Path) -> set[str]:
    """Array names in an npz (``"image"`` for ``image.npy``); empty set when
    ``path`` is not a zip file. Reads only the zip's central directory."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return set()
    try:
        with zipfile.ZipFile(path) as zf:
            return {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
    except _ZIP_ERRORS:
        return set()


def _open_zip(path: Path) -> zipfile.ZipFile:
    if not Path(path).is_file():
        raise DataError("no such file", path)
    try:
        return zipfile.ZipFile(path)
    except _ZIP_ERRORS as e:
        raise DataError(f"not a readable .npz archive (truncated or corrupt): {e}", path) from None


def npz_headers(path: Path, required: tuple[str, ...] = ()) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{name: (shape, dtype)}`` for every member, read from the ``.npy`` headers.

    Raises :class:`DataError` naming the file when it is not a zip, a member's
    header is unreadable, or one of ``required`` is missing.
    """
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    with _open_zip(path) as zf:
        for name in zf.namelist():
            if not name.endswith(".npy"):
                continue
            try:
                with zf.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    shape, _fortran, dtype = _read_header(f, version)
            except _ZIP_ERRORS as e:
                raise DataError(f"member {name!r} has an unreadable .npy header: {e}", path) from None
            out[name[:-4]] = (tuple(int(s) for s in shape), np.dtype(dtype))
    missing = [k for k in required if k not in out]
    if missing:
        raise DataError(
            f"missing array(s) {', '.join(missing)}; found {', '.join(sorted(out)) or 'none'}", path
        )
    return out


def read_member(path: Path, key: str, allow_pickle: bool = False) -> np.ndarray:
    """One array of an npz; corrupt or truncated data -> :class:`DataError`."""
    with _open_zip(path) as zf:
        name = key + ".npy"
        if name not in zf.namelist():
            raise DataError(f"missing array {key!r}", path)
        try:
            with zf.open(name) as f:
                return np.lib.format.read_array(f, allow_pickle=allow_pickle)
        except ValueError as e:
            if "allow_pickle" in str(e):
                raise DataError(
                    f"array {key!r} holds pickled Python objects; store it as a plain (e.g. string) array", path
                ) from None
            raise DataError(f"array {key!r} could not be read (truncated or corrupt): {e}", path) from None
        except _ZIP_ERRORS as e:
            raise DataError(f"array {key!r} could not be read (truncated or corrupt): {e}", path) from None


def read_bool_packed(path: Path, key: str, chunk_rows: int = 256) -> tuple[np.ndarray, int]:
    """Read a 0/1 (bool or integer) member in chunks along axis 0 and return
    ``(np.packbits(a, axis=-1), width)``; unpack with
    ``np.unpackbits(p, axis=-1, count=width).astype(bool)``.

    Values other than 0/1 raise :class:`DataError` naming the file, key and values.
    Peak memory is one chunk, never the whole unpacked array.
    """
    with _open_zip(path) as zf:
        name = key + ".npy"
        if name not in zf.namelist():
            raise DataError(f"missing array {key!r}", path)
        try:
            with zf.open(name) as f:
                version = np.lib.format.read_magic(f)
                shape, fortran, dtype = _read_header(f, version)
                dtype = np.dtype(dtype)
                if fortran or dtype.hasobject or dtype.kind not in "biuf" or len(shape) < 2:
                    raise DataError(f"array {key!r} must be a C-ordered numeric array, got {dtype} {shape}", path)
                n, rest = shape[0], tuple(shape[1:])
                width = rest[-1]
                out = np.empty((n, *rest[:-1], (width + 7) // 8), dtype=np.uint8)
                row_bytes = int(np.prod(rest)) * dtype.itemsize
                for start in range(0, n, chunk_rows):
                    stop = min(n, start + chunk_rows)
                    want = (stop - start) * row_bytes
                    buf = f.read(want)
                    if len(buf) != want:
                        raise DataError(
                            f"array {key!r} is truncated (rows {start}..{stop - 1} of {n} incomplete)", path
                        )
                    a = np.frombuffer(buf, dtype=dtype).reshape(stop - start, *rest)
                    if dtype.kind != "b":
                        bad = (a != 0) & (a != 1)
                        if bad.any():
                            vals = np.unique(a[bad])[:5]
                            raise DataError(
                                f"array {key!r} must be binary (0/1); found values {', '.join(map(str, vals))}", path
                            )
                    out[start:stop] = np.packbits(a != 0, axis=-1)
        except DataError:
            raise
        except _ZIP_ERRORS as e:
            raise DataError(f"array {key!r} could not be read (truncated or corrupt): {e}", path) from None
    return out, int(width)


def unpack(packed: np.ndarray, width: int) -> np.ndarray:
    """Inverse of :func:`read_bool_packed` for any leading index: bool array."""
    return np.unpackbits(packed, axis=-1, count=width).astype(bool)


def detect_npz(path: Path, keys: set[str]) -> bool:
    """``path`` is an npz holding ``keys``, or a folder with exactly one npz,
    which holds them (cheap: zip directories only)."""
    if path.is_dir():
        npzs = list(path.glob("*.npz"))
        return len(npzs) == 1 and detect_npz(npzs[0], keys)
    return path.suffix.lower() == ".npz" and keys <= npz_members(path)


def single_npz(path: Path, detect, what: str) -> Path:
    """``path`` itself, or the one matching npz inside a folder."""
    if path.is_dir():
        cands = sorted(p for p in path.glob("*.npz") if detect(p))
        if len(cands) != 1:
            n_npz = len(list(path.glob("*.npz")))
            raise DataError(
                f"a {what} folder must hold exactly one {what} .npz; found {len(cands)} "
                f"(of {n_npz} .npz files)", path)
        return cands[0]
    return path


class ArrayCache:
    """Arrays of one file, filled on demand: ``cache.get(key, reader)`` calls
    ``reader()`` the first time only. Obtain it with :func:`array_cache` so that
    all datasets on the same (unchanged) file share one instance."""

    def __init__(self):
        self.arrays: dict[str, object] = {}

    def get(self, key: str, reader):
        if key not in self.arrays:
            self.arrays[key] = reader()
        return self.arrays[key]


_CACHES: "weakref.WeakValueDictionary[tuple, ArrayCache]" = weakref.WeakValueDictionary()


def array_cache(path: Path) -> ArrayCache:
    """The shared :class:`ArrayCache` of ``path`` (keyed by path, size and
    modification time, so a rewritten file is read afresh). Held weakly here:
    it lives as long as some dataset holds it."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    c = _CACHES.get(key)
    if c is None:
        c = ArrayCache()
        _CACHES[key] = c
    return c


class SharedNpzArrays:
    """Mixin for datasets on one npz file: ``self._cache`` is the file's shared
    :class:`ArrayCache`, which is not pickled — worker processes (spawn) re-open
    the file instead of receiving its arrays."""

    path: Path
    _cache: ArrayCache

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._cache = array_cache(self.path)
