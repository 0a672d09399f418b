"""Atomic file writes: write to a temporary file in the same folder, fsync, then
``os.replace``. A crash leaves either the old file or the new one, never half.

Errors name the destination, never the temporary file: an ``OSError`` met while
making the temporary file or committing it says which destination could not be
written (same class and ``errno``), and an error raised by the writer inside the
block has the temporary path in its message replaced by the destination's."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _cannot(e: OSError, what: str, path: Path) -> OSError:
    """``e`` (same class and ``errno``) as "cannot ``what`` (reason)", without the temporary path;
    its ``destination`` attribute is ``path`` (for callers that say which of their arguments it was)."""
    err = type(e)(f"cannot {what} ({e.strerror or e})")
    err.errno = e.errno  # kept for callers that map it (read-only, disk full); the message stays plain
    err.destination = str(path)
    return err


def _make_parent(path: Path) -> None:
    """Make ``path``'s folder; a file in its place is a ``NotADirectoryError`` (not mkdir's "File exists")."""
    if path.parent.exists() and not path.parent.is_dir():
        raise NotADirectoryError(20, f"{path.parent} is a file, not a folder")  # ENOTDIR
    path.parent.mkdir(parents=True, exist_ok=True)


def _name_destination(e: BaseException, tmp: Path, path: Path) -> None:
    """Replace the temporary path ``tmp`` by the destination ``path`` in ``e``'s message (in place)."""
    pairs = [(str(tmp.absolute()), str(path.absolute())), (str(tmp), str(path))]

    def fix(v):
        if isinstance(v, os.PathLike):
            v = os.fspath(v)
        if not isinstance(v, str):
            return v
        for t, p in pairs:
            v = v.replace(t, p)
        return v

    with contextlib.suppress(AttributeError, TypeError):
        e.args = tuple(fix(a) for a in e.args)
    for attr in ("filename", "filename2", "strerror", "path"):  # OSError's attributes, DataError.path
        v = getattr(e, attr, None)
        if v is not None and fix(v) != v:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(e, attr, fix(v))


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None):
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    ``suffix`` defaults to the target's full suffix (``.nii.gz`` stays
    ``.nii.gz``) so writers that infer the format from the name still work.
    On error the temporary file is removed and ``path`` is untouched.

    Raises:
        IsADirectoryError: ``path`` is a folder (checked before anything is written).
        OSError: the temporary file cannot be made or committed; the message names ``path``.
    """
    path = Path(path)
    if path.is_dir():
        err = IsADirectoryError(f"{path}: is a folder; expected the name of a file to write")
        err.errno = 21  # EISDIR
        raise err
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    try:
        _make_parent(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    except OSError as e:
        raise _cannot(e, f"write {path}", path) from None
    os.close(fd)
    try:
        try:
            yield Path(tmp)
        except Exception as e:
            _name_destination(e, Path(tmp), path)
            raise
        try:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            # mkstemp makes 0600 files; give the result the mode a plain open() would
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except OSError as e:
            raise _cannot(e, f"write {path}", path) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(path: str | Path):
    """Yield a temporary folder beside ``path``; on success it becomes ``path``
    (which must not exist yet). On error the temporary folder is removed; errors
    name ``path`` (and files under it), never the temporary folder."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: already exists; refusing to overwrite")
    try:
        _make_parent(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise _cannot(e, f"create the folder {path}", path) from None
    try:
        try:
            yield tmp
        except Exception as e:
            _name_destination(e, tmp, path)
            raise
        try:
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
            os.replace(tmp, path)
        except OSError as e:
            raise _cannot(e, f"create the folder {path}", path) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of the file at ``path``, read in 1 MiB chunks (weights, volumes: no whole-file copy
    in memory). The one place the project hashes a file (provenance in ``data.json``/``run.json``, caches)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
