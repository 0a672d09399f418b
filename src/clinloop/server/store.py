"""Durable server state: SQLite (WAL) for rows, atomically written files for arrays.

Layout under ``state_dir``::

    clinloop.sqlite3            sessions, accepted masks, user profiles, images
    images/<sha256>.npy         each image once (content-addressed), float32 (C, *spatial)
    sources/<sha256><suffix>    the uploaded file as sent (DICOM-SEG export needs it)
    masks/<session>/<n>.npy     every accepted mask, never overwritten

Durability: every array is written with :func:`clinloop.atomic.atomic_path`
(temp file, fsync, rename) *before* the row that points to it is committed,
and SQLite runs in WAL mode (``synchronous=NORMAL``, ``FULL`` for accepts); a process killed with
SIGKILL at any instant therefore leaves each accepted mask either fully
recorded or not yet acknowledged. An open session is stored as its history
(``Session.history``, JSON) plus seed and starting profile, and is rebuilt
exactly with ``Session.replay`` after a restart.

All identifiers that name files are generated here (hex digests, random
session ids, integers); nothing from a request becomes a path.
"""
from __future__ import annotations

import hashlib
import json
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

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    sha TEXT PRIMARY KEY, meta TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, image_sha TEXT NOT NULL, case_id TEXT,
    model TEXT NOT NULL, seed INTEGER NOT NULL, profile TEXT, history TEXT NOT NULL,
    status TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_owner ON sessions(owner);
CREATE TABLE IF NOT EXISTS accepted (
    n INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, owner TEXT NOT NULL,
    file TEXT NOT NULL, area INTEGER NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS accepted_session ON accepted(session_id);
CREATE TABLE IF NOT EXISTS profiles (
    owner TEXT NOT NULL, model TEXT NOT NULL, profile TEXT NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (owner, model));
"""

_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
SOURCE_SUFFIXES = (".png", ".jpg", ".jpeg", ".nii", ".nii.gz", ".dcm", ".npy")


def default_state_dir() -> Path:
    """``$CLINLOOP_STATE`` or ``~/.local/share/clinloop``."""
    env = os.environ.get("CLINLOOP_STATE")
    return Path(env) if env else Path.home() / ".local" / "share" / "clinloop"


def valid_session_id(sid: str) -> bool:
    return bool(_SESSION_ID.match(sid or ""))


class Store:
    """Thread-safe access to the state folder (one SQLite connection behind a lock)."""

    def __init__(self, state_dir: str | Path):
        self.dir = Path(state_dir).resolve()
        for sub in ("images", "sources", "masks"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.dir / "clinloop.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (SIGKILL); accept() switches to FULL
        # for its own transaction so an accepted mask also survives a power loss
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _q(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ---------------------------------------------------------------- images
    def put_image(self, image: np.ndarray, meta: dict[str, Any], source: bytes | None = None,
                  source_suffix: str | None = None) -> tuple[str, dict[str, Any]]:
        """Store a channels-first float32 image once; returns its sha256 and the stored meta."""
        image = np.ascontiguousarray(image, dtype=np.float32)
        h = hashlib.sha256()
        h.update(repr(image.shape).encode())
        h.update(image.tobytes())
        if source is not None:
            h.update(source)
        sha = h.hexdigest()
        path = self.dir / "images" / f"{sha}.npy"
        if not path.is_file():
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, image)
        meta = dict(meta)
        if source is not None:
            if source_suffix not in SOURCE_SUFFIXES:
                raise ValueError(f"unsupported source suffix {source_suffix!r}")
            src = self.dir / "sources" / f"{sha}{source_suffix}"
            if not src.is_file():
                with atomic_path(src) as tmp:
                    Path(tmp).write_bytes(source)
            meta["source_suffix"] = source_suffix
        self._q("INSERT OR IGNORE INTO images(sha, meta, created) VALUES (?,?,?)",
                (sha, json.dumps(meta), time.time()))
        return sha, meta

    def image(self, sha: str) -> tuple[np.ndarray, dict[str, Any]]:
        if not _SHA.match(sha):
            raise KeyError(sha)
        rows = self._q("SELECT meta FROM images WHERE sha=?", (sha,))
        if not rows:
            raise KeyError(sha)
        return np.load(self.dir / "images" / f"{sha}.npy"), json.loads(rows[0][0])

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
        self._q("INSERT INTO sessions(id, owner, image_sha, case_id, model, seed, profile, history, status, created, updated)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (sid, owner, image_sha, case_id, model, int(seed), json.dumps(profile) if profile is not None else None,
                 "[]", "open", now, now))
        return sid

    def session(self, sid: str, owner: str) -> dict[str, Any] | None:
        """The session row, or ``None`` when it does not exist *or belongs to someone else*."""
        if not valid_session_id(sid):
            return None
        rows = self._q("SELECT id, owner, image_sha, case_id, model, seed, profile, history, status, created, updated"
                       " FROM sessions WHERE id=? AND owner=?", (sid, owner))
        if not rows:
            return None
        r = rows[0]
        return {"id": r[0], "owner": r[1], "image_sha": r[2], "case_id": r[3], "model": r[4], "seed": r[5],
                "profile": json.loads(r[6]) if r[6] else None, "history": json.loads(r[7]), "status": r[8],
                "created": r[9], "updated": r[10]}

    def sessions(self, owner: str, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._q("SELECT id, case_id, status, history, created, updated FROM sessions WHERE owner=?"
                       " ORDER BY updated DESC LIMIT ?", (owner, int(limit)))
        return [{"session_id": r[0], "case_id": r[1], "status": r[2],
                 "iteration": sum(1 for h in json.loads(r[3]) if h.get("action") in ("click", "choose", "hint")),
                 "created": r[4], "updated": r[5]} for r in rows]

    def save_history(self, sid: str, history: list[dict[str, Any]], status: str) -> None:
        self._q("UPDATE sessions SET history=?, status=?, updated=? WHERE id=?",
                (json.dumps(history), status, time.time(), sid))

    def accept(self, sid: str, owner: str, mask: np.ndarray, history: list[dict[str, Any]]) -> int:
        """Write the accepted mask file, then (one transaction) record it and the
        session's history/status. Returns the accepted mask's number."""
        folder = self.dir / "masks" / sid
        n_prev = self._q("SELECT COUNT(*) FROM accepted WHERE session_id=?", (sid,))[0][0]
        path = folder / f"{n_prev}.npy"
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(mask, dtype=bool))
        now = time.time()
        with self._lock:
            cur = self._db.cursor()
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute("INSERT INTO accepted(session_id, owner, file, area, created) VALUES (?,?,?,?,?)",
                            (sid, owner, f"{sid}/{n_prev}.npy", int(np.asarray(mask).sum()), now))
                n = cur.lastrowid
                cur.execute("UPDATE sessions SET history=?, status='accepted', updated=? WHERE id=?",
                            (json.dumps(history), now, sid))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            finally:
                cur.execute("PRAGMA synchronous=NORMAL")
        return int(n)

    def accepted_mask(self, sid: str, owner: str) -> np.ndarray | None:
        """The latest accepted mask of a session (``None`` when never accepted)."""
        rows = self._q("SELECT file FROM accepted WHERE session_id=? AND owner=? ORDER BY n DESC LIMIT 1", (sid, owner))
        if not rows:
            return None
        return np.load(self.dir / "masks" / rows[0][0])

    def accepted_list(self, owner: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT n, session_id, owner, file, area, created FROM accepted"
        rows = self._q(sql + (" WHERE owner=? ORDER BY n" if owner else " ORDER BY n"), (owner,) if owner else ())
        return [{"n": r[0], "session_id": r[1], "owner": r[2], "file": r[3], "area": r[4], "created": r[5]} for r in rows]

    # -------------------------------------------------------------- profiles
    def profile(self, owner: str, model: str) -> dict[str, Any] | None:
        rows = self._q("SELECT profile FROM profiles WHERE owner=? AND model=?", (owner, model))
        return json.loads(rows[0][0]) if rows else None

    def save_profile(self, owner: str, model: str, profile: dict[str, Any]) -> None:
        self._q("INSERT INTO profiles(owner, model, profile, updated) VALUES (?,?,?,?)"
                " ON CONFLICT(owner, model) DO UPDATE SET profile=excluded.profile, updated=excluded.updated",
                (owner, model, json.dumps(profile), time.time()))
