"""The workstation's SQLite store over time: versioned accepts (concurrent, stale copies), migration of a
database made by the old code, ``clinloop state recover`` from the mask files, and image rows keyed by their
meta as well as their pixels."""
from __future__ import annotations

import json
import sqlite3
import threading

import numpy as np
import pytest

from clinloop.cli import main
from clinloop.server import db as dbmod
from clinloop.server.store import StaleSessionError, Store, StoreError, backup, check
from tests._store_fixtures import ACCEPT, CLICK, OLD_SCHEMA, mask


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
