"""Durable server state: SQLite (WAL) for rows, atomically written files for arrays.

Layout under ``state_dir``::

    clinloop.sqlite3            sessions, accepted masks, user profiles, images
    images/<sha256>.npy         each image once (content-addressed), float32 (C, *spatial)
    sources/<sha256><suffix>    the uploaded file as sent (DICOM-SEG export needs it)
    masks/<session>/<n>.npy     every accepted mask, never overwritten
    masks/<session>/<n>.json    its record (who, when, model, history, seed, ...): the audit trail
                                as files, enough to re-record it (:func:`clinloop.server.recover.recover_accepted`)

Durability: every array is written with :func:`clinloop.atomic.atomic_path`
(temp file, fsync, rename) *before* the row that points to it is committed,
and SQLite runs in WAL mode (``synchronous=NORMAL``, ``FULL`` for accepts); a process killed with
SIGKILL at any instant therefore leaves each accepted mask either fully
recorded or not yet acknowledged. An open session is stored as its history
(``Session.history``, JSON) plus seed and starting profile, and is rebuilt
exactly with ``Session.replay`` after a restart.

Accepted masks are versioned: every accept keeps its own file and row (version
1, 2, ... per session; owner, time, model, the history that produced it);
:meth:`Store.accepted_mask` gives the latest, :meth:`Store.accepted_versions`
all of them, and :meth:`Store.is_reopened` tells a session undone after its
accept (its latest accepted mask is then no longer current).

Opening runs ``PRAGMA quick_check`` (a damaged file raises
:class:`StoreDamagedError` naming the file and what to do) and migrates older
schemas; :meth:`Store.close` merges the WAL. ``sqlite3`` errors surface as
:class:`StoreError` subclasses with a message for a person and an
``http_status``. Backup and health check: :func:`backup`, :func:`check`
(``clinloop state backup|check``), in :mod:`clinloop.server.db`.

All identifiers that name files are generated here (hex digests, random
session ids, integers); nothing from a request becomes a path.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from clinloop.atomic import atomic_path
from clinloop.server.db import (DB_NAME, SCHEMA_VERSION, BackupReport, CheckReport, StaleSessionError,  # noqa: F401
                                StoreBusyError, StoreDamagedError, StoreError, StoreFileError, StoreFullError,
                                StoreReadOnlyError, backup, check, close_db, open_db, translate)

log = logging.getLogger("clinloop.server.store")

_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
SOURCE_SUFFIXES = (".png", ".jpg", ".jpeg", ".nii", ".nii.gz", ".dcm", ".npy")
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLAC")
_ACCEPTED_COLS = "n, version, session_id, owner, model, file, area, created"


def default_state_dir() -> Path:
    """``$CLINLOOP_STATE`` or ``~/.local/share/clinloop``."""
    env = os.environ.get("CLINLOOP_STATE")
    return Path(env) if env else Path.home() / ".local" / "share" / "clinloop"


def valid_session_id(sid: str) -> bool:
    return bool(_SESSION_ID.match(sid or ""))


def _save_npy(path: Path, a: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, a)


def _accepted_row(r: tuple) -> dict[str, Any]:
    return {"n": r[0], "version": r[1], "session_id": r[2], "owner": r[3], "model": r[4], "file": r[5],
            "area": r[6], "created": r[7]}


class Store:
    """Thread-safe access to the state folder (one SQLite connection behind a lock).

    Args:
        state_dir: the state folder (made when missing).
        timeout: seconds to wait for a lock held by another connection before
            :class:`StoreBusyError`.
        verify: run ``PRAGMA quick_check`` when opening (a damaged file raises
            :class:`StoreDamagedError`).

    Use as a context manager or call :meth:`close` at shutdown (merges the WAL).
    After SQLite reports corruption at run time every write is refused with
    :class:`StoreDamagedError`, so nothing new goes into a damaged file.
    """

    def __init__(self, state_dir: str | Path, *, timeout: float = 5.0, verify: bool = True):
        self.dir = Path(state_dir).resolve()
        self.db_path = self.dir / DB_NAME
        try:
            for sub in ("images", "sources", "masks"):
                (self.dir / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise translate(e, self.db_path, "create the state folder") from None
        self._lock = threading.Lock()
        self._accept_lock = threading.Lock()  # version numbers and mask files, one accept at a time
        self._damaged: str | None = None
        self._db: sqlite3.Connection | None = open_db(self.db_path, timeout=timeout, verify=verify)

    # ------------------------------------------------------------ plumbing
    def close(self) -> None:
        """Merge the WAL into the database file (``wal_checkpoint(TRUNCATE)``) and close; idempotent.
        The server calls this at shutdown (after the last request)."""
        with self._lock:
            if self._db is None:
                return
            db, self._db = self._db, None
            if not close_db(db):
                log.warning("%s: WAL not fully merged at close (a reader was active); the next open merges it",
                            self.db_path)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def damaged(self) -> str | None:
        """The damage message once SQLite reported corruption at run time, else None."""
        return self._damaged

    def _conn(self, write: bool) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.db_path}: the store is closed (the server is shutting down)")
        if write and self._damaged:
            raise StoreDamagedError(self._damaged)
        return self._db

    def _fail(self, e: BaseException, doing: str) -> StoreError:
        err = translate(e, self.db_path, doing)
        if isinstance(err, StoreDamagedError) and not self._damaged:
            self._damaged = str(err)
            log.error("%s (writes are refused from now on)", err)
        return err

    def _q(self, sql: str, args: tuple = (), doing: str = "read the database") -> list[tuple]:
        with self._lock:
            db = self._conn(sql.lstrip()[:6].upper() in _WRITES)
            try:
                return db.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                raise self._fail(e, doing) from None

    @contextlib.contextmanager
    def _transaction(self, doing: str, full: bool = False):
        """``BEGIN IMMEDIATE`` .. ``COMMIT`` (``ROLLBACK`` on any error); ``full``: fsync the commit."""
        with self._lock:
            db = self._conn(True)
            try:
                if full:
                    db.execute("PRAGMA synchronous=FULL")
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db.cursor()
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise self._fail(e, doing) from None
            finally:
                if full:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("PRAGMA synchronous=NORMAL")

    def _write_file(self, path: Path, write, doing: str) -> None:
        try:
            with atomic_path(path) as tmp:
                write(tmp)
        except OSError as e:
            raise translate(e, self.db_path, doing) from None

    def _load(self, path: Path, what: str) -> np.ndarray:
        try:
            return np.load(path)
        except (OSError, ValueError) as e:
            raise StoreFileError(f"{path}: {what} missing or unreadable ({e}); restore it from the backup of "
                                 f"the state folder ({self.dir}); `clinloop state check` lists such files") from None

    # ---------------------------------------------------------------- images
    def put_image(self, image: np.ndarray, meta: dict[str, Any], source: bytes | None = None,
                  source_suffix: str | None = None) -> tuple[str, dict[str, Any]]:
        """Store a channels-first float32 image once; returns its sha256 and the stored meta.

        The digest covers the pixels, the meta (affine, spacing, modality: what an
        export writes) and the source bytes, so the same pixels uploaded with another
        affine get their own row instead of exporting the first upload's geometry."""
        image = np.ascontiguousarray(image, dtype=np.float32)
        h = hashlib.sha256()
        h.update(repr(image.shape).encode())
        h.update(image.tobytes())
        h.update(json.dumps(meta, sort_keys=True, default=str).encode())
        if source is not None:
            h.update(source)
        sha = h.hexdigest()
        path = self.dir / "images" / f"{sha}.npy"
        if not path.is_file():
            self._write_file(path, lambda tmp: _save_npy(tmp, image), "store the image")
        meta = dict(meta)
        if source is not None:
            if source_suffix not in SOURCE_SUFFIXES:
                raise ValueError(f"unsupported source suffix {source_suffix!r}")
            src = self.dir / "sources" / f"{sha}{source_suffix}"
            if not src.is_file():
                self._write_file(src, lambda tmp: Path(tmp).write_bytes(source), "store the uploaded file")
            meta["source_suffix"] = source_suffix
        self._q("INSERT OR IGNORE INTO images(sha, meta, created) VALUES (?,?,?)",
                (sha, json.dumps(meta), time.time()), "record the image")
        return sha, meta

    def image(self, sha: str) -> tuple[np.ndarray, dict[str, Any]]:
        if not _SHA.match(sha):
            raise KeyError(sha)
        rows = self._q("SELECT meta FROM images WHERE sha=?", (sha,))
        if not rows:
            raise KeyError(sha)
        return self._load(self.dir / "images" / f"{sha}.npy", "image file"), json.loads(rows[0][0])

    def image_meta(self, sha: str) -> dict[str, Any]:
        """The stored meta of an image (without loading its array); ``KeyError`` when unknown."""
        rows = self._q("SELECT meta FROM images WHERE sha=?", (sha,)) if _SHA.match(sha) else []
        if not rows:
            raise KeyError(sha)
        return json.loads(rows[0][0])

    def source_path(self, sha: str, meta: dict[str, Any]) -> Path | None:
        suf = meta.get("source_suffix")
        if not _SHA.match(sha) or suf not in SOURCE_SUFFIXES:
            return None
        p = self.dir / "sources" / f"{sha}{suf}"
        return p if p.is_file() else None

    # -------------------------------------------------------------- sessions
    def new_session(self, owner: str, image_sha: str, case_id: str | None, model: str, seed: int,
                    profile: dict | None) -> str:
        sid = secrets.token_urlsafe(18)
        now = time.time()
        self._q("INSERT INTO sessions(id, owner, image_sha, case_id, model, seed, profile, history, status, created,"
                " updated) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (sid, owner, image_sha, case_id, model, int(seed), json.dumps(profile) if profile is not None else None,
                 "[]", "open", now, now), "create the session")
        return sid

    def session(self, sid: str, owner: str) -> dict[str, Any] | None:
        """The session row, or ``None`` when it does not exist *or belongs to someone else*.
        ``rev`` counts the history writes (for :meth:`save_history`'s ``expected_rev``)."""
        if not valid_session_id(sid):
            return None
        rows = self._q("SELECT id, owner, image_sha, case_id, model, seed, profile, history, status, created, updated,"
                       " rev FROM sessions WHERE id=? AND owner=?", (sid, owner))
        if not rows:
            return None
        r = rows[0]
        return {"id": r[0], "owner": r[1], "image_sha": r[2], "case_id": r[3], "model": r[4], "seed": r[5],
                "profile": json.loads(r[6]) if r[6] else None, "history": json.loads(r[7]), "status": r[8],
                "created": r[9], "updated": r[10], "rev": r[11]}

    def sessions(self, owner: str, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._q("SELECT id, case_id, status, history, created, updated FROM sessions WHERE owner=?"
                       " ORDER BY updated DESC LIMIT ?", (owner, int(limit)))
        return [{"session_id": r[0], "case_id": r[1], "status": r[2],
                 "iteration": sum(1 for h in json.loads(r[3]) if h.get("action") in ("click", "box", "choose", "hint")),
                 "created": r[4], "updated": r[5]} for r in rows]

    def case_sessions(self) -> list[dict[str, Any]]:
        """Every session opened on a worklist case (all owners), oldest change first:
        ``[{session_id, case_id, owner, status, updated}]`` (for the worklist's status column)."""
        rows = self._q("SELECT id, case_id, owner, status, updated FROM sessions WHERE case_id IS NOT NULL"
                       " ORDER BY updated")
        return [{"session_id": r[0], "case_id": r[1], "owner": r[2], "status": r[3], "updated": r[4]} for r in rows]

    @staticmethod
    def _stale(sid: str, expected: int, cur: sqlite3.Cursor) -> StaleSessionError:
        row = cur.execute("SELECT rev FROM sessions WHERE id=?", (sid,)).fetchone()
        return StaleSessionError(f"session {sid!r} changed meanwhile (stored revision {row[0] if row else None}, this "
                                 f"copy was made from revision {expected}); reload the session and try again")

    def save_history(self, sid: str, history: list[dict[str, Any]], status: str,
                     expected_rev: int | None = None) -> int | None:
        """Store the session's history and status; returns the new revision (``None``: no such session).

        With ``expected_rev`` (the ``rev`` the in-memory copy was built from or last
        saved) the write is refused with :class:`StaleSessionError` when another copy
        saved meanwhile, so the last writer cannot silently drop acknowledged actions."""
        with self._transaction("save the session history") as cur:
            sql = "UPDATE sessions SET history=?, status=?, updated=?, rev=rev+1 WHERE id=?"
            args: tuple = (json.dumps(history), status, time.time(), sid)
            if expected_rev is not None:
                sql, args = sql + " AND rev=?", args + (int(expected_rev),)
            cur.execute(sql, args)
            if cur.rowcount == 0:
                if expected_rev is not None and cur.execute("SELECT 1 FROM sessions WHERE id=?", (sid,)).fetchone():
                    raise self._stale(sid, expected_rev, cur)
                return None
            return int(cur.execute("SELECT rev FROM sessions WHERE id=?", (sid,)).fetchone()[0])

    # -------------------------------------------------------- accepted masks
    def accept(self, sid: str, owner: str, mask: np.ndarray, history: list[dict[str, Any]],
               expected_rev: int | None = None) -> int:
        """Keep a new accepted version of the session's mask: write its file and its
        JSON record (atomically, fsynced), then in one transaction (``synchronous=FULL``)
        add its row (owner, time, model, the history that produced it) and mark the
        session accepted. Earlier versions stay. Returns the row number ``n``.

        Args:
            mask: bool array of the image's spatial shape.
            history: ``Session.history`` at the accept (ends with the accept action).
            expected_rev: as in :meth:`save_history`.
        """
        mask = np.asarray(mask, dtype=bool)
        with self._accept_lock:
            rows = self._q("SELECT s.model, s.rev, s.image_sha, s.case_id, s.seed, s.profile, i.meta FROM sessions s"
                           " LEFT JOIN images i ON i.sha = s.image_sha WHERE s.id=? AND s.owner=?", (sid, owner))
            if not rows:
                raise ValueError(f"no session {sid!r} of user {owner!r} to accept")
            model, rev, image_sha, case_id, seed, profile, image_meta = rows[0]
            if expected_rev is not None and rev != expected_rev:
                raise StaleSessionError(f"session {sid!r} changed meanwhile (stored revision {rev}, this copy was "
                                        f"made from revision {expected_rev}); reload the session and accept again")
            version = int(self._q("SELECT COALESCE(MAX(version), 0) FROM accepted WHERE session_id=?", (sid,))[0][0]) + 1
            rel = f"{sid}/{version - 1}.npy"
            if self._q("SELECT 1 FROM accepted WHERE file=?", (rel,)):  # never overwrite an acknowledged mask
                raise StoreError(f"{self.dir / 'masks' / rel}: already recorded for another version; not overwritten")
            now, area = time.time(), int(mask.sum())
            record = {"session_id": sid, "version": version, "owner": owner, "model": model, "created": now,
                      "area": area, "shape": list(mask.shape), "image_sha": image_sha, "case_id": case_id,
                      "file": rel, "history": history, "seed": seed, "profile": json.loads(profile) if profile else None,
                      "image_meta": json.loads(image_meta) if image_meta else None}
            path = self.dir / "masks" / rel
            self._write_file(path, lambda tmp: _save_npy(tmp, mask), "write the accepted mask")
            self._write_file(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(record)),
                             "write the accepted mask's record")
            hist = json.dumps(history)
            with self._transaction("record the accepted mask", full=True) as cur:
                if expected_rev is not None:
                    cur.execute("SELECT rev FROM sessions WHERE id=?", (sid,))
                    if cur.fetchone()[0] != expected_rev:
                        raise self._stale(sid, expected_rev, cur)
                cur.execute("INSERT INTO accepted(session_id, owner, file, area, created, version, model, history)"
                            " VALUES (?,?,?,?,?,?,?,?)", (sid, owner, rel, area, now, version, model, hist))
                n = cur.lastrowid
                cur.execute("UPDATE sessions SET history=?, status='accepted', updated=?, rev=rev+1 WHERE id=?",
                            (hist, now, sid))
        return int(n)

    def accepted_versions(self, sid: str, owner: str | None = None) -> list[dict[str, Any]]:
        """Every accepted version of a session, oldest first: ``n, version, session_id, owner,
        model, file, area, created`` and ``history`` (the actions that produced it; ``None``
        for versions migrated from a database that did not record it)."""
        sql = f"SELECT {_ACCEPTED_COLS}, history FROM accepted WHERE session_id=?"
        rows = self._q(sql + (" AND owner=?" if owner else "") + " ORDER BY version", (sid, owner) if owner else (sid,))
        return [{**_accepted_row(r), "history": json.loads(r[8]) if r[8] else None} for r in rows]

    def latest_accepted(self, sid: str, owner: str) -> dict[str, Any] | None:
        """The latest accepted version's row (no history) plus ``reopened``: True when the
        session was undone after that accept, so the mask is no longer its current result."""
        rows = self._q(f"SELECT {_ACCEPTED_COLS}, (SELECT status FROM sessions WHERE id=?) FROM accepted"
                       " WHERE session_id=? AND owner=? ORDER BY version DESC LIMIT 1", (sid, sid, owner))
        return {**_accepted_row(rows[0]), "reopened": rows[0][8] != "accepted"} if rows else None

    def is_reopened(self, sid: str, owner: str) -> bool:
        """True when the session has an accepted version but was reopened (undo after accept)."""
        latest = self.latest_accepted(sid, owner)
        return bool(latest and latest["reopened"])

    def accepted_mask(self, sid: str, owner: str, version: int | None = None) -> np.ndarray | None:
        """The latest accepted mask of a session, or the given ``version`` (``None`` when there is none).
        Also while the session is reopened: check :meth:`is_reopened` to refuse that case."""
        sql = "SELECT file FROM accepted WHERE session_id=? AND owner=?"
        rows = (self._q(sql + " ORDER BY version DESC LIMIT 1", (sid, owner)) if version is None
                else self._q(sql + " AND version=?", (sid, owner, int(version))))
        return self._load(self.dir / "masks" / rows[0][0], "accepted mask file") if rows else None

    def accepted_list(self, owner: str | None = None) -> list[dict[str, Any]]:
        """All accepted versions (of ``owner``, or everyone's) in the order they were accepted."""
        sql = f"SELECT {_ACCEPTED_COLS} FROM accepted"
        rows = self._q(sql + (" WHERE owner=? ORDER BY n" if owner else " ORDER BY n"), (owner,) if owner else ())
        return [_accepted_row(r) for r in rows]

    # -------------------------------------------------------------- profiles
    def profile(self, owner: str, model: str) -> dict[str, Any] | None:
        rows = self._q("SELECT profile FROM profiles WHERE owner=? AND model=?", (owner, model))
        return json.loads(rows[0][0]) if rows else None

    def save_profile(self, owner: str, model: str, profile: dict[str, Any]) -> None:
        self._q("INSERT INTO profiles(owner, model, profile, updated) VALUES (?,?,?,?)"
                " ON CONFLICT(owner, model) DO UPDATE SET profile=excluded.profile, updated=excluded.updated",
                (owner, model, json.dumps(profile), time.time()), "save the user's profile")
