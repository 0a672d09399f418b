"""The workstation's SQLite store: damage detection at open, WAL merge on close,
online backup while writing, ``clinloop state backup|check``, versioned accepts,
migration of a database made by the old code, and sqlite3 errors as clear errors."""
from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading

import numpy as np
import pytest

from clinloop.cli import main
from clinloop.server import db as dbmod
from clinloop.server.store import (StaleSessionError, Store, StoreBusyError, StoreDamagedError, StoreError,
                                   StoreFileError, StoreFullError, StoreReadOnlyError, backup, check)

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


# ------------------------------------------------------------------ damage at open
def test_damaged_last_pages_refused_at_open(tmp_path):
    s, _ = filled(tmp_path)
    s.close()
    db = tmp_path / "clinloop.sqlite3"
    size = db.stat().st_size
    assert size >= 20 * 4096
    overwrite(db, size - 3 * 4096, 3 * 4096)  # the last three pages
    with pytest.raises(StoreDamagedError) as e:
        Store(tmp_path)
    msg = str(e.value)
    assert str(db) in msg and "clinloop state backup" in msg and str(tmp_path / "masks") in msg
    assert "\n" not in msg and isinstance(e.value, ValueError)


def test_damaged_header_refused_at_open(tmp_path):
    s, _ = filled(tmp_path, 3)
    s.close()
    overwrite(tmp_path / "clinloop.sqlite3", 0, 100)
    with pytest.raises(StoreDamagedError, match="file is not a database"):
        Store(tmp_path)


def test_serve_on_damaged_database_exits_with_one_line(tmp_path, capsys):
    s, _ = filled(tmp_path, 3)
    s.close()
    overwrite(tmp_path / "clinloop.sqlite3", 0, 100)
    rc = main(["serve", "--state-dir", str(tmp_path), "--model", "no-such-model"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("clinloop: error: ") and "is damaged" in err


def test_runtime_corruption_refuses_further_writes(tmp_path):
    s, sha = filled(tmp_path)
    s.close()
    db = tmp_path / "clinloop.sqlite3"
    overwrite(db, db.stat().st_size - 3 * 4096, 3 * 4096)
    s = Store(tmp_path, verify=False)  # as a server without the check would have started
    with pytest.raises(StoreDamagedError):
        s.sessions("ana", limit=10_000)
    assert s.damaged and str(db) in s.damaged
    with pytest.raises(StoreDamagedError):  # nothing new goes into the damaged file
        s.save_profile("ana", "spa", {"w": 1})
    s.close()


# ------------------------------------------------------------------ close / WAL
def test_close_merges_the_wal(tmp_path):
    s, _ = filled(tmp_path, 20)
    wal = tmp_path / "clinloop.sqlite3-wal"
    assert wal.stat().st_size > 0  # rows sit in the WAL while serving
    s.close()
    s.close()  # idempotent
    assert not wal.exists() or wal.stat().st_size == 0
    with pytest.raises(StoreError, match="closed"):
        s.sessions("ana")
    with Store(tmp_path) as s2:
        assert len(s2.sessions("ana")) == 20
    assert not wal.exists() or wal.stat().st_size == 0


# ------------------------------------------------------------------ backup / check
def test_backup_while_another_connection_writes(tmp_path):
    s, sha = filled(tmp_path / "state", 5)
    # a writer holding an uncommitted transaction does not block the backup, and is not in it
    other = sqlite3.connect(tmp_path / "state" / "clinloop.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO profiles(owner, model, profile, updated) VALUES ('bo', 'spa', '{}', 0)")
    r = backup(tmp_path / "state", tmp_path / "b1.sqlite3")
    assert r.counts["sessions"] == 5 and r.counts["profiles"] == 0
    other.execute("COMMIT")
    other.close()
    # a thread keeps writing through the store while backups are taken
    stop, written = threading.Event(), []

    def writer():
        while not stop.is_set() and len(written) < 400:
            written.append(s.new_session("ana", sha, None, "spa", 0, None))

    t = threading.Thread(target=writer)
    t.start()
    try:
        reports = [backup(tmp_path / "state", tmp_path / f"c{i}.sqlite3") for i in range(3)]
    finally:
        stop.set()
        t.join()
    for i, rep in enumerate(reports):
        assert 5 <= rep.counts["sessions"] <= 5 + len(written) and rep.counts["profiles"] == 1
        assert check(tmp_path / f"c{i}.sqlite3").ok
    final = backup(tmp_path / "state", tmp_path / "final.sqlite3")
    assert final.counts["sessions"] == 5 + len(written)
    assert not (tmp_path / "final.sqlite3-wal").exists()
    with sqlite3.connect(tmp_path / "final.sqlite3") as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        ids = {r[0] for r in c.execute("SELECT id FROM sessions")}
    assert set(written) <= ids
    # the backup restores: copied over a state folder's database it opens with every row
    (tmp_path / "restored").mkdir()
    (tmp_path / "restored" / "clinloop.sqlite3").write_bytes((tmp_path / "final.sqlite3").read_bytes())
    with Store(tmp_path / "restored") as r2:
        assert len(r2.sessions("ana", limit=1000)) == 5 + len(written)
    with pytest.raises(ValueError, match="already exists"):
        backup(tmp_path / "state", tmp_path / "final.sqlite3")
    s.close()


def test_state_cli_backup_and_check_exit_codes(tmp_path, capsys):
    s, sha = filled(tmp_path / "st", 2)
    sid = s.new_session("ana", sha, None, "spa", 0, None)
    s.accept(sid, "ana", mask(3), [CLICK, ACCEPT])
    assert main(["state", "check", "--state", str(tmp_path / "st")]) == 0
    out = capsys.readouterr().out
    assert "ok (schema 1; 3 sessions, 1 accepted, 1 images, 0 profiles)" in out
    assert main(["state", "backup", "--state", str(tmp_path / "st"), "--out", str(tmp_path / "b.sqlite3")]) == 0
    assert "integrity ok" in capsys.readouterr().out
    assert main(["state", "check", "--state", str(tmp_path / "b.sqlite3")]) == 0  # a backup file checks too
    (f := tmp_path / "afile").write_text("x")  # a destination that cannot be written is blamed, not the database
    assert main(["state", "backup", "--state", str(tmp_path / "st"), "--out", str(f / "b")]) == 2
    assert capsys.readouterr().err == (f"clinloop: error: --out {f / 'b'}: cannot write {f / 'b'} ({f} is a file, "
                                       "not a folder); check that its folder exists and is writable\n")
    # an unrecorded mask file is a note, not a failure
    np.save(tmp_path / "st" / "masks" / sid / "7.npy", mask(0))
    assert main(["state", "check", "--state", str(tmp_path / "st")]) == 0
    assert "note: 1 mask file(s) no row records" in capsys.readouterr().out
    # a recorded mask that is gone is a failure
    os.unlink(tmp_path / "st" / "masks" / sid / "0.npy")
    assert main(["state", "check", "--state-dir", str(tmp_path / "st")]) == 1
    assert "accepted mask missing or unreadable" in capsys.readouterr().out
    s.close()
    overwrite(tmp_path / "st" / "clinloop.sqlite3", 0, 100)
    assert main(["state", "check", "--state", str(tmp_path / "st")]) == 1
    assert "DAMAGED" in capsys.readouterr().out
    assert main(["state", "check", "--state", str(tmp_path / "nothing")]) == 2
    assert "no clinloop database" in capsys.readouterr().err


# ------------------------------------------------------------------ versioned accepts
def test_versioned_accepts_and_reopen(tmp_path):
    with Store(tmp_path) as s:
        sha, _ = s.put_image(np.zeros((1, 8, 8), np.float32), {})
        sid = s.new_session("ana", sha, "c1", "spa", 0, None)
        assert s.latest_accepted(sid, "ana") is None and not s.is_reopened(sid, "ana")
        s.save_history(sid, [CLICK], "open")
        n1 = s.accept(sid, "ana", mask(4), [CLICK, ACCEPT])
        assert s.latest_accepted(sid, "ana")["version"] == 1 and not s.is_reopened(sid, "ana")
        s.save_history(sid, [CLICK], "open")  # undo after accept
        assert s.is_reopened(sid, "ana") and s.latest_accepted(sid, "ana")["reopened"]
        assert s.accepted_mask(sid, "ana").sum() == 5  # still the latest accepted version
        n2 = s.accept(sid, "ana", mask(9), [CLICK, CLICK, ACCEPT])
        assert n2 > n1 and not s.is_reopened(sid, "ana")
        vs = s.accepted_versions(sid, "ana")
        assert [(v["version"], v["area"], v["owner"], v["model"]) for v in vs] == [(1, 5, "ana", "spa"),
                                                                                   (2, 10, "ana", "spa")]
        assert vs[0]["history"] == [CLICK, ACCEPT] and vs[1]["history"] == [CLICK, CLICK, ACCEPT]
        assert s.accepted_mask(sid, "ana").sum() == 10
        np.testing.assert_array_equal(s.accepted_mask(sid, "ana", version=1), mask(4))
        assert s.accepted_versions(sid, "bo") == [] and s.accepted_mask(sid, "bo") is None
        assert [(a["session_id"], a["version"]) for a in s.accepted_list("ana")] == [(sid, 1), (sid, 2)]
        rec = json.loads((tmp_path / "masks" / sid / "1.json").read_text())  # the audit record as a file
        assert rec["version"] == 2 and rec["area"] == 10 and rec["history"] == [CLICK, CLICK, ACCEPT]
        assert rec["case_id"] == "c1" and rec["owner"] == "ana"


def test_concurrent_accepts_keep_every_version(tmp_path):
    with Store(tmp_path) as s:
        sha, _ = s.put_image(np.zeros((1, 8, 8), np.float32), {})
        sid = s.new_session("ana", sha, None, "spa", 0, None)
        ts = [threading.Thread(target=s.accept, args=(sid, "ana", mask(i), [ACCEPT])) for i in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        vs = s.accepted_versions(sid, "ana")
        assert [v["version"] for v in vs] == [1, 2, 3, 4, 5, 6]
        assert sorted(v["area"] for v in vs) == [1, 2, 3, 4, 5, 6]  # no mask overwritten by another
        for v in vs:
            assert s.accepted_mask(sid, "ana", v["version"]).sum() == v["area"]


def test_stale_copy_history_write_refused(tmp_path):
    with Store(tmp_path) as s:
        sha, _ = s.put_image(np.zeros((1, 8, 8), np.float32), {})
        sid = s.new_session("ana", sha, None, "spa", 0, None)
        rev = s.session(sid, "ana")["rev"]
        assert s.save_history(sid, [CLICK], "open", expected_rev=rev) == rev + 1  # copy A
        with pytest.raises(StaleSessionError) as e:  # copy B, built from the same revision
            s.save_history(sid, [dict(CLICK, positive=False)], "open", expected_rev=rev)
        assert e.value.http_status == 409
        with pytest.raises(StaleSessionError):
            s.accept(sid, "ana", mask(0), [CLICK, ACCEPT], expected_rev=rev)
        assert s.session(sid, "ana")["history"] == [CLICK] and s.accepted_versions(sid) == []


# ------------------------------------------------------------------ migration
def test_database_of_the_old_code_migrates(tmp_path):
    db = tmp_path / "clinloop.sqlite3"
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.executescript(OLD_SCHEMA)
    c.execute("INSERT INTO images VALUES ('a' || hex(zeroblob(31)), '{}', 0)")
    sha = c.execute("SELECT sha FROM images").fetchone()[0]
    a_hist, b_hist = [CLICK, ACCEPT], [CLICK]
    rows = [("sessAAAAAAAAAAAAAAAA", "accepted", a_hist), ("sessBBBBBBBBBBBBBBBB", "open", b_hist)]
    for sid, status, hist in rows:
        c.execute("INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                  (sid, "ana", sha, None, "spa-old", 0, None, json.dumps(hist), status, 1.0, 2.0))
    (tmp_path / "masks").mkdir()
    for k, (sid, i) in enumerate([("sessAAAAAAAAAAAAAAAA", 0), ("sessBBBBBBBBBBBBBBBB", 0),
                                  ("sessAAAAAAAAAAAAAAAA", 1)]):
        (tmp_path / "masks" / sid).mkdir(exist_ok=True)
        np.save(tmp_path / "masks" / sid / f"{i}.npy", mask(k))
        c.execute("INSERT INTO accepted(session_id, owner, file, area, created) VALUES (?,?,?,?,?)",
                  (sid, "ana", f"{sid}/{i}.npy", k + 1, 3.0 + k))
    c.close()
    old_bytes = (tmp_path / "masks" / "sessAAAAAAAAAAAAAAAA" / "1.npy").read_bytes()

    with Store(tmp_path) as s:
        a, b = "sessAAAAAAAAAAAAAAAA", "sessBBBBBBBBBBBBBBBB"
        va = s.accepted_versions(a, "ana")
        assert [(v["version"], v["file"], v["model"], v["area"]) for v in va] == [
            (1, f"{a}/0.npy", "spa-old", 1), (2, f"{a}/1.npy", "spa-old", 3)]
        assert va[0]["history"] is None and va[1]["history"] == a_hist  # known only for the latest, accepted
        assert s.accepted_mask(a, "ana").sum() == 3 and not s.is_reopened(a, "ana")
        assert s.is_reopened(b, "ana") and s.accepted_versions(b)[0]["history"] is None  # undone after accept
        assert s.session(a, "ana")["rev"] == 0
        s.accept(a, "ana", mask(7), a_hist)
        assert s.latest_accepted(a, "ana")["version"] == 3
        assert s.latest_accepted(a, "ana")["file"] == f"{a}/2.npy"
    assert (tmp_path / "masks" / a / "1.npy").read_bytes() == old_bytes
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == dbmod.SCHEMA_VERSION
        c.execute(f"PRAGMA user_version = {dbmod.SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer clinloop"):
        Store(tmp_path)


# ------------------------------------------------------------------ error translation
def test_locked_readonly_full_errors_are_clear(tmp_path):
    s, sha = filled(tmp_path, 1)
    s.close()
    s = Store(tmp_path, timeout=0.05)
    other = sqlite3.connect(tmp_path / "clinloop.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    with pytest.raises(StoreBusyError, match="locked by another process") as e:
        s.save_profile("ana", "spa", {"w": 1})
    assert str(tmp_path / "clinloop.sqlite3") in str(e.value) and e.value.http_status == 503
    other.execute("ROLLBACK")
    other.close()
    s._db.execute("PRAGMA query_only=1")
    with pytest.raises(StoreReadOnlyError, match="read-only"):
        s.new_session("ana", sha, None, "spa", 0, None)
    s._db.execute("PRAGMA query_only=0")
    pages = s._db.execute("PRAGMA page_count").fetchone()[0]
    s._db.execute(f"PRAGMA max_page_count={pages}")
    sid = s.sessions("ana")[0]["session_id"]
    with pytest.raises(StoreFullError, match="no space left") as e:
        s.save_history(sid, [CLICK] * 20_000, "open")
    assert e.value.http_status == 507
    assert len(s.session(sid, "ana")["history"]) == 20  # the failed write left the stored history
    s.close()


def test_os_errors_and_missing_files_are_clear(tmp_path):
    db = tmp_path / "clinloop.sqlite3"
    assert isinstance(dbmod.translate(OSError(errno.ENOSPC, "No space left"), db, "write"), StoreFullError)
    assert isinstance(dbmod.translate(OSError(errno.EROFS, "Read-only"), db, "write"), StoreReadOnlyError)
    with Store(tmp_path) as s:
        sha, _ = s.put_image(np.zeros((1, 8, 8), np.float32), {})
        sid = s.new_session("ana", sha, None, "spa", 0, None)
        s.accept(sid, "ana", mask(2), [ACCEPT])
        os.unlink(tmp_path / "masks" / sid / "0.npy")
        with pytest.raises(StoreFileError, match="accepted mask file missing") as e:
            s.accepted_mask(sid, "ana")
        assert str(tmp_path / "masks" / sid / "0.npy") in str(e.value)


# ------------------------------------------------------------------ recover from the mask files
def test_recover_accepted_after_losing_or_restoring_the_database(tmp_path, capsys):
    st = tmp_path / "st"
    keys = ("id", "owner", "image_sha", "case_id", "model", "seed", "profile", "history", "status")
    with Store(st) as s:
        sha, _ = s.put_image(np.zeros((1, 8, 8), np.float32), {"format": "npy", "spacing": [1.0, 1.0]})
        a = s.new_session("ana", sha, "c1", "spa", 7, {"w": [0.5, 0.5]})
        b = s.new_session("bo", sha, "c2", "spa", 3, None)
        s.accept(a, "ana", mask(1), [CLICK, ACCEPT])
        s.accept(b, "bo", mask(2), [CLICK, CLICK, ACCEPT])
        backup(st, tmp_path / "older.sqlite3")
        s.save_history(a, [CLICK], "open")  # undo, then a second accept after the backup
        s.accept(a, "ana", mask(5), [CLICK, CLICK, CLICK, ACCEPT])
        before = {sid: {k: s.session(sid, o)[k] for k in keys} for sid, o in ((a, "ana"), (b, "bo"))}
        versions = {sid: s.accepted_versions(sid) for sid in (a, b)}

    def same(s: Store):
        for sid, o in ((a, "ana"), (b, "bo")):
            assert {k: s.session(sid, o)[k] for k in keys} == before[sid]
            got = s.accepted_versions(sid)
            assert [{k: v[k] for k in ("version", "owner", "model", "area", "file", "history", "created")}
                    for v in got] == [{k: v[k] for k in ("version", "owner", "model", "area", "file", "history",
                                                         "created")} for v in versions[sid]]
        np.testing.assert_array_equal(s.accepted_mask(a, "ana"), mask(5))

    # 1) the database is lost (damaged and moved aside): everything accepted comes back from the files
    for suffix in ("", "-wal", "-shm"):
        p = st / f"clinloop.sqlite3{suffix}"
        if p.exists():
            p.rename(tmp_path / f"damaged{suffix}")
    assert main(["state", "recover", "--state", str(st)]) == 0
    assert "3 accepted mask(s) re-recorded (2 session(s) re-created), 0 already" in capsys.readouterr().out
    with Store(st) as s:
        same(s)
    assert check(st).ok
    # 2) a backup older than the last accept is restored: the newer version is added, the session is accepted again
    for suffix in ("-wal", "-shm"):
        (st / f"clinloop.sqlite3{suffix}").unlink(missing_ok=True)
    (st / "clinloop.sqlite3").write_bytes((tmp_path / "older.sqlite3").read_bytes())
    assert main(["state", "recover", "--state", str(st)]) == 0
    assert "1 accepted mask(s) re-recorded (0 session(s) re-created), 2 already" in capsys.readouterr().out
    with Store(st) as s:
        same(s)
    # a record that does not match its mask file is left out and reported
    (st / "masks" / b / "0.json").write_text(json.dumps({**versions[b][0], "area": 99, "seed": 3,
                                                         "image_sha": sha}))
    (st / "clinloop.sqlite3").unlink()
    assert main(["state", "recover", "--state", str(st)]) == 1
    assert "differs from the record's 99" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()  # neither a database nor accepted masks (empty, mistyped): refused, nothing made
    assert main(["state", "recover", "--state", str(tmp_path / "empty")]) == 2
    assert "holds no workstation state (no clinloop.sqlite3 and no accepted masks" in capsys.readouterr().err
    assert not list((tmp_path / "empty").iterdir())


def test_same_pixels_with_another_affine_keep_their_own_meta(tmp_path):
    """Images are content-addressed by pixels *and* meta: a second upload of the
    same pixels with another affine must not export the first one's geometry."""
    img = np.arange(64, dtype=np.float32).reshape(1, 8, 8)
    eye = np.eye(4).tolist()
    scaled = [[0.8, 0, 0, -40], [0, 0.8, 0, 12], [0, 0, 2.5, 7], [0, 0, 0, 1]]
    with Store(tmp_path) as s:
        a, _ = s.put_image(img, {"format": "png", "affine": None})
        b, _ = s.put_image(img, {"format": "nifti", "affine": scaled})
        assert a != b and s.image_meta(b)["affine"] == scaled and s.image_meta(a)["affine"] is None
        assert s.put_image(img, {"format": "nifti", "affine": scaled})[0] == b  # stored once
        assert s.put_image(img, {"format": "nifti", "affine": eye})[0] not in (a, b)
        np.testing.assert_array_equal(s.image(b)[0], img)
        with pytest.raises(KeyError):
            s.image_meta("0" * 64)
