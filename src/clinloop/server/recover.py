"""Re-record accepted masks from their files: the way back when the database is
lost or damaged without a backup, or when a restored backup is older than the
last accepts (``clinloop state recover``).

Every accept writes ``masks/<session>/<n>.npy`` and its record ``<n>.json``
(owner, time, model, seed, starting profile, image, the history that produced
it) before its row is committed, so the files alone rebuild the ``accepted``
rows, and the ``sessions`` rows they belong to (status accepted, the history of
their latest accept, hence ``Session.replay`` gives the same session back when
the image file is still in ``images/``). Run it with the server stopped.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clinloop.server.db import DB_NAME, close_db, open_db, translate


_KEYS = ("session_id", "version", "owner", "model", "created", "area", "file", "history", "seed", "image_sha")


@dataclass
class RecoverReport:
    recorded: int = 0          # accepted versions added to the database
    already: int = 0           # records the database already held
    sessions: int = 0          # session rows re-created
    problems: list[str] = field(default_factory=list)  # records left out, with the reason


def _records(masks: Path, report: RecoverReport) -> list[dict]:
    out = []
    for p in sorted(masks.glob("*/*.json")):
        try:
            rec = json.loads(p.read_text())
            missing = [k for k in _KEYS if k not in rec]
            if missing:
                raise ValueError(f"record lacks {', '.join(missing)}")
            m = np.load(p.with_suffix(".npy"), mmap_mode="r")
            if rec["file"] != f"{p.parent.name}/{p.stem}.npy" or rec["session_id"] != p.parent.name:
                raise ValueError("record does not name its own file")
            if int(np.count_nonzero(m)) != int(rec["area"]):
                raise ValueError(f"mask area {int(np.count_nonzero(m))} differs from the record's {rec['area']}")
            out.append(rec)
        except (OSError, ValueError, KeyError, TypeError) as e:
            report.problems.append(f"{p}: left out ({e})")
    return sorted(out, key=lambda r: (r["session_id"], r["version"]))


def recover_accepted(state_dir: str | Path) -> RecoverReport:
    """Add to the state folder's database (made when missing) every accepted version whose
    record file it does not hold, and the session rows they need. Idempotent.

    Raises:
        ValueError: the folder holds no workstation state (neither a database nor any accepted
            mask file under ``masks/``): a mistyped or empty folder, where nothing is created.
    """
    state_dir = Path(state_dir)
    db = state_dir / DB_NAME
    if not db.exists() and not any((state_dir / "masks").glob("*/*.json")) \
            and not any((state_dir / "masks").glob("*/*.npy")):
        raise ValueError(f"{state_dir}: holds no workstation state (no {DB_NAME} and no accepted masks under "
                         "masks/); give the state folder of `clinloop serve` (--state-dir / $CLINLOOP_STATE)")
    report = RecoverReport()
    recs = _records(state_dir / "masks", report)
    conn = open_db(db)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for r in recs:
            sid = r["session_id"]
            if conn.execute("SELECT 1 FROM accepted WHERE session_id=? AND version=?", (sid, r["version"])).fetchone():
                report.already += 1
                continue
            if r.get("image_meta") is not None and (state_dir / "images" / f"{r['image_sha']}.npy").is_file():
                conn.execute("INSERT OR IGNORE INTO images(sha, meta, created) VALUES (?,?,?)",
                             (r["image_sha"], json.dumps(r["image_meta"]), r["created"]))
            hist = json.dumps(r["history"])
            prof = json.dumps(r["profile"]) if r.get("profile") is not None else None
            cur = conn.execute("INSERT OR IGNORE INTO sessions(id, owner, image_sha, case_id, model, seed, profile,"
                               " history, status, created, updated) VALUES (?,?,?,?,?,?,?,?,'accepted',?,?)",
                               (sid, r["owner"], r["image_sha"], r.get("case_id"), r["model"], int(r["seed"]),
                                prof, hist, r["created"], r["created"]))
            report.sessions += cur.rowcount
            conn.execute("INSERT INTO accepted(session_id, owner, file, area, created, version, model, history)"
                         " VALUES (?,?,?,?,?,?,?,?)",
                         (sid, r["owner"], r["file"], int(r["area"]), r["created"], int(r["version"]), r["model"], hist))
            # an accept newer than the session's stored state (e.g. after an older backup) is its current result
            conn.execute("UPDATE sessions SET history=?, status='accepted', updated=?, rev=rev+1"
                         " WHERE id=? AND updated < ?", (hist, r["created"], sid, r["created"]))
            report.recorded += 1
        conn.execute("COMMIT")
    except (sqlite3.Error, OSError) as e:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise translate(e, db, "re-record the accepted masks") from None
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        close_db(conn)
    return report
