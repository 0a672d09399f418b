"""Shared helpers of the store tests (test_store.py, test_store_versions.py): the old schema, small masks,
a filled store and page overwrites."""
from __future__ import annotations

import numpy as np

from clinloop.server.store import Store

# the schema of the code before versioned accepts (user_version 0), verbatim
OLD_SCHEMA = """
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

CLICK = {"action": "click", "point": [3.0, 4.0], "positive": True}
ACCEPT = {"action": "accept"}


def mask(i: int) -> np.ndarray:
    """An 8x8 mask with i + 1 foreground pixels (area known by construction)."""
    m = np.zeros((8, 8), bool)
    m.flat[: i + 1] = True
    return m


def filled(state, n_sessions: int = 150) -> tuple[Store, str]:
    """A store with one image and ``n_sessions`` sessions of long histories (~100 pages)."""
    s = Store(state)
    sha, _ = s.put_image(np.zeros((1, 8, 8), np.float32), {"format": "npy"})
    for i in range(n_sessions):
        sid = s.new_session("ana", sha, f"case{i}", "spa", i, None)
        s.save_history(sid, [dict(CLICK, i=i)] * 20, "open")
    return s, sha


def overwrite(path, offset: int, n: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8).tobytes())
