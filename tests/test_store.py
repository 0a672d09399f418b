"""The workstation's SQLite store: damage detection at open, WAL merge on close,
online backup while writing, ``clinloop state backup|check`` and sqlite3 errors as clear errors
(versioned accepts, migration and recovery: test_store_versions.py)."""
from __future__ import annotations

import errno
import os
import sqlite3
import threading

import numpy as np
import pytest

from clinloop.cli import main
from clinloop.server import db as dbmod
from clinloop.server.store import (Store, StoreBusyError, StoreDamagedError, StoreError, StoreFileError,
                                   StoreFullError, StoreReadOnlyError, backup, check)
from tests._store_fixtures import ACCEPT, CLICK, filled, mask, overwrite



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
