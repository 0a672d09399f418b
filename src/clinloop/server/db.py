"""The SQLite layer of the workstation's state folder: schema and its migrations,
opening with an integrity check, ``sqlite3`` errors as messages for a person,
the online backup and the health check behind ``clinloop state backup|check``.

:class:`clinloop.server.store.Store` is the API the server uses; this module
holds what also works without one (on a database file, while a server may be
serving it: SQLite's online backup API reads one consistent snapshot, and a
reader in WAL mode never blocks the server's writes).
"""
from __future__ import annotations

import errno
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from clinloop.atomic import atomic_path

DB_NAME = "clinloop.sqlite3"
SCHEMA_VERSION = 1  # stored as PRAGMA user_version; 0 = the schema before versioned accepts

# version 0: the original tables (IF NOT EXISTS, so an old database is left as it is)
_BASE = [
    "CREATE TABLE IF NOT EXISTS images (sha TEXT PRIMARY KEY, meta TEXT NOT NULL, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, owner TEXT NOT NULL, image_sha TEXT NOT NULL,"
    " case_id TEXT, model TEXT NOT NULL, seed INTEGER NOT NULL, profile TEXT, history TEXT NOT NULL,"
    " status TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS sessions_owner ON sessions(owner)",
    "CREATE TABLE IF NOT EXISTS accepted (n INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL,"
    " owner TEXT NOT NULL, file TEXT NOT NULL, area INTEGER NOT NULL, created REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS accepted_session ON accepted(session_id)",
    "CREATE TABLE IF NOT EXISTS profiles (owner TEXT NOT NULL, model TEXT NOT NULL, profile TEXT NOT NULL,"
    " updated REAL NOT NULL, PRIMARY KEY (owner, model))",
]
# MIGRATIONS[v] takes a database from user_version v to v + 1; a new database runs them all
MIGRATIONS: list[list[str]] = [
    [  # 0 -> 1: versioned accepted masks (audit trail) and a revision counter per session
        "ALTER TABLE sessions ADD COLUMN rev INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE accepted ADD COLUMN version INTEGER",
        "ALTER TABLE accepted ADD COLUMN model TEXT",
        "ALTER TABLE accepted ADD COLUMN history TEXT",
        # old rows: version = rank within the session (the file names were this count - 1)
        "UPDATE accepted SET version = (SELECT COUNT(*) FROM accepted a"
        " WHERE a.session_id = accepted.session_id AND a.n <= accepted.n)",
        "UPDATE accepted SET model = (SELECT s.model FROM sessions s WHERE s.id = accepted.session_id)",
        # the history that produced a migrated accept is known only for the latest one of a session
        # still accepted (an accepted session takes no more actions); earlier ones stay NULL
        "UPDATE accepted SET history = (SELECT s.history FROM sessions s WHERE s.id = accepted.session_id"
        " AND s.status = 'accepted') WHERE n IN (SELECT MAX(n) FROM accepted GROUP BY session_id)",
        "CREATE UNIQUE INDEX accepted_version ON accepted(session_id, version)",
    ],
]
assert len(MIGRATIONS) == SCHEMA_VERSION


class StoreError(ValueError):
    """A state-store failure, with a message that says what to do.
    ``http_status`` is the answer the REST layer should give."""

    http_status = 503


class StoreDamagedError(StoreError):
    """The database file is damaged (``PRAGMA quick_check`` failed, or SQLite reported corruption)."""


class StoreBusyError(StoreError):
    """The database stayed locked by another connection longer than the busy timeout."""


class StoreReadOnlyError(StoreError):
    """The database or the state folder cannot be written (permissions, read-only file system)."""


class StoreFullError(StoreError):
    """No space left for the database or an array file."""

    http_status = 507


class StoreFileError(StoreError):
    """An array file the database points to is missing or unreadable."""

    http_status = 500


class StaleSessionError(StoreError):
    """A history write from a copy of a session older than the stored one."""

    http_status = 409


def db_path(state: str | Path) -> Path:
    """The database file of a state folder (or ``state`` itself when it is a file)."""
    p = Path(state)
    return p if p.is_file() else p / DB_NAME


def damaged_message(db: Path, what: str) -> str:
    """One line: which file, what SQLite said, and the two ways back."""
    return (f"{db}: the clinloop database is damaged ({what}). Stop the server, then either restore the last backup "
            f"made by `clinloop state backup` (copy it over this file and delete {db.name}-wal and {db.name}-shm) "
            f"or move the damaged file (with its -wal and -shm) aside and run `clinloop state recover` to re-record "
            f"the accepted masks from their files in {db.parent / 'masks'}")


def translate(e: BaseException, db: Path, doing: str) -> StoreError:
    """A ``sqlite3.Error`` or ``OSError`` met while ``doing`` something -> the matching :class:`StoreError`."""
    if isinstance(e, StoreError):
        return e
    code = getattr(e, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(e).lower()
    num = getattr(e, "errno", None)
    where = f"{db}: cannot {doing}"
    if primary in (11, 26) or "malformed" in text or "not a database" in text:  # SQLITE_CORRUPT, SQLITE_NOTADB
        return StoreDamagedError(damaged_message(db, str(e)))
    if primary in (5, 6) or "database is locked" in text or "table is locked" in text:  # SQLITE_BUSY, LOCKED
        return StoreBusyError(f"{where}: the database is locked by another process (a second server on the same "
                              "state folder, or a tool holding a write lock); try again, or stop the other process")
    if primary == 8 or "readonly" in text or num in (errno.EROFS, errno.EACCES, errno.EPERM):  # SQLITE_READONLY
        return StoreReadOnlyError(f"{where}: the state folder is read-only ({e}); check the permissions of "
                                  f"{db.parent} and its files, and that the file system is mounted read-write")
    if primary == 13 or "disk is full" in text or num in (errno.ENOSPC, errno.EDQUOT):  # SQLITE_FULL
        return StoreFullError(f"{where}: no space left on the disk ({e}); free space on the disk of {db.parent}")
    if isinstance(e, sqlite3.ProgrammingError) and "closed" in text:
        return StoreError(f"{where}: the store is closed (the server is shutting down)")
    if primary in (10, 14) or isinstance(e, OSError):  # SQLITE_IOERR, SQLITE_CANTOPEN
        return StoreError(f"{where}: input/output error ({e}); check the disk and the permissions of {db.parent}")
    return StoreError(f"{where}: {type(e).__name__}: {e}")


def connect(db: Path, *, create: bool = True, timeout: float = 5.0) -> sqlite3.Connection:
    """A connection in autocommit mode (explicit ``BEGIN`` for transactions); ``create=False``
    refuses to make a new file."""
    uri = f"file:{quote(str(Path(db).resolve()))}?mode={'rwc' if create else 'rw'}"
    return sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False, isolation_level=None)


def integrity_problems(conn: sqlite3.Connection, full: bool = False) -> list[str]:
    """``PRAGMA quick_check`` (or the slower ``integrity_check`` with ``full``): the problems found, [] when ok.
    A file SQLite cannot even read raises ``sqlite3.DatabaseError``."""
    rows = conn.execute("PRAGMA integrity_check" if full else "PRAGMA quick_check").fetchall()
    return [str(r[0]) for r in rows if r[0] != "ok"]


def migrate(conn: sqlite3.Connection, db: Path) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION` (one transaction); returns the version found."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise StoreError(f"{db}: database schema version {found} was made by a newer clinloop "
                         f"(this one knows up to {SCHEMA_VERSION}); upgrade clinloop")
    if found == SCHEMA_VERSION:
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql in (_BASE if found == 0 else []) + [s for m in MIGRATIONS[found:] for s in m]:
            conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found


def open_db(db: Path, *, timeout: float = 5.0, verify: bool = True) -> sqlite3.Connection:
    """Open (or create) the database in WAL mode, check it (``quick_check``) and migrate it.

    Raises :class:`StoreDamagedError` naming the file and what to do when it is damaged,
    other :class:`StoreError` subclasses when it is locked, read-only or the disk is full."""
    db = Path(db)
    conn = None
    try:
        conn = connect(db, timeout=timeout)
        conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (SIGKILL); accepts switch to FULL (power loss)
        conn.execute("PRAGMA synchronous=NORMAL")
        if verify:
            problems = integrity_problems(conn)
            if problems:
                more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
                raise StoreDamagedError(damaged_message(db, f"quick_check: {problems[0]}{more}"))
        migrate(conn, db)
        return conn
    except (sqlite3.Error, OSError, StoreError) as e:
        if conn is not None:
            conn.close()
        raise translate(e, db, "open the database") from None


def close_db(conn: sqlite3.Connection) -> bool:
    """Merge the WAL into the database file (``wal_checkpoint(TRUNCATE)``) and close.
    Returns False when a reader kept the checkpoint from completing (the WAL is then
    merged by the next open)."""
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    except sqlite3.Error:
        busy = 1
    conn.close()
    return not busy


# ---------------------------------------------------------------- backup / check
def _counts(conn: sqlite3.Connection) -> dict[str, int]:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return {t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
            for t in ("sessions", "accepted", "images", "profiles") if t in names}


def _existing_db(state: str | Path) -> Path:
    db = db_path(state)
    if not db.is_file():
        raise FileNotFoundError(f"{db}: no clinloop database here (give the state folder of `clinloop serve`, "
                                "--state-dir / $CLINLOOP_STATE)")
    return db


@dataclass
class BackupReport:
    source: str
    dest: str
    bytes: int
    counts: dict[str, int]


def backup(state: str | Path, dest: str | Path, *, overwrite: bool = False, timeout: float = 30.0) -> BackupReport:
    """Copy the database with SQLite's online backup API: one consistent snapshot, safe
    while a server is serving (its writes go on meanwhile). The copy is a single
    self-contained file (rollback journal, no -wal), checked with ``integrity_check``
    and written atomically. ``dest`` may be a folder: ``clinloop-YYYYmmdd-HHMMSS.sqlite3``
    is made in it. The arrays (``images/``, ``masks/``, ``sources/``) are files that are
    never rewritten: copy them with any file tool.

    Raises:
        FileNotFoundError: no database at ``state``.
        StoreDamagedError: the snapshot fails its integrity check (the source is damaged).
        ValueError: ``dest`` exists (without ``overwrite``) or is the database itself.
    """
    db = _existing_db(state)
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / f"clinloop-{time.strftime('%Y%m%d-%H%M%S')}.sqlite3"
    if dest.exists() and not overwrite:
        raise ValueError(f"{dest}: already exists; choose another name (or --force to replace it)")
    if dest.resolve() == db.resolve():
        raise ValueError(f"{dest}: is the database itself; back up to another file")
    try:
        src = connect(db, create=False, timeout=timeout)
    except sqlite3.Error as e:
        raise translate(e, db, "open the database for a backup") from None
    try:
        with atomic_path(dest) as tmp:
            out = sqlite3.connect(tmp, isolation_level=None)
            try:
                src.backup(out)  # all pages in one step: one read transaction, one snapshot
                problems = integrity_problems(out, full=True)
                if problems:
                    raise StoreDamagedError(damaged_message(db, f"its backup copy fails integrity_check: {problems[0]}"))
                out.execute("PRAGMA journal_mode=DELETE")  # a single file, complete without a -wal
                counts = _counts(out)
            finally:
                out.close()
    except (sqlite3.Error, OSError) as e:
        raise translate(e, db, f"back up to {dest}") from None
    finally:
        src.close()
    return BackupReport(str(db), str(dest), dest.stat().st_size, counts)


@dataclass
class CheckReport:
    """What :func:`check` found. ``ok`` is False for database damage or a missing/wrong
    array file; ``notes`` (e.g. mask files no row records) do not make it fail."""

    db: str
    schema_version: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        head = f"{self.db}: {'ok' if self.ok else 'DAMAGED'}"
        if self.schema_version is not None:
            head += f" (schema {self.schema_version}; " + ", ".join(f"{v} {k}" for k, v in self.counts.items()) + ")"
        return [head] + [f"problem: {p}" for p in self.problems] + [f"note: {n}" for n in self.notes]


def _check_arrays(conn: sqlite3.Connection, root: Path, report: CheckReport) -> None:
    import numpy as np

    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not {"accepted", "images", "sessions"} <= names:
        report.problems.append("tables missing: " + ", ".join(sorted({"accepted", "images", "sessions"} - names)))
        return
    recorded = set()
    for file, area in conn.execute("SELECT file, area FROM accepted ORDER BY n"):
        recorded.add(file)
        p = root / "masks" / file
        try:
            m = np.load(p, mmap_mode="r")
            if int(np.count_nonzero(m)) != int(area):
                report.problems.append(f"{p}: accepted mask has area {int(np.count_nonzero(m))}, its row says {area}")
        except (OSError, ValueError) as e:
            report.problems.append(f"{p}: accepted mask missing or unreadable ({e})")
    for (sha,) in conn.execute("SELECT sha FROM images"):
        p = root / "images" / f"{sha}.npy"
        try:
            np.load(p, mmap_mode="r")
        except (OSError, ValueError) as e:
            report.problems.append(f"{p}: image missing or unreadable ({e})")
    n_orphan = conn.execute("SELECT COUNT(*) FROM sessions WHERE image_sha NOT IN (SELECT sha FROM images)").fetchone()[0]
    if n_orphan:
        report.problems.append(f"{n_orphan} session(s) point to an image the database does not hold")
    masks = root / "masks"
    extra = sorted(str(p.relative_to(masks)) for p in masks.glob("*/*.npy")) if masks.is_dir() else []
    extra = [f for f in extra if f not in recorded]
    if extra:
        report.notes.append(f"{len(extra)} mask file(s) no row records (an accept cut short before it was "
                            f"acknowledged, or accepts newer than a restored backup), e.g. {masks / extra[0]}")


def check(state: str | Path, *, timeout: float = 30.0) -> CheckReport:
    """Full health check of a state folder (or database file), safe while serving:
    SQLite ``integrity_check``, the schema version, and every array file a row points
    to (accepted masks: present, readable, area as recorded; images: present, readable).
    Given a database file instead of a folder (e.g. a backup), only the database is checked.

    Raises FileNotFoundError when there is no database."""
    db = _existing_db(state)
    folder = Path(state).is_dir()
    report = CheckReport(str(db))
    try:
        conn = connect(db, create=False, timeout=timeout)
    except sqlite3.Error as e:
        raise translate(e, db, "open the database") from None
    try:
        report.problems += integrity_problems(conn, full=True)
        if report.ok:
            report.schema_version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            report.counts = _counts(conn)
            if folder:
                _check_arrays(conn, db.parent, report)
            else:
                report.notes.append("array files not checked (a database file was given, not a state folder)")
    except sqlite3.Error as e:
        err = translate(e, db, "check the database")
        if not isinstance(err, StoreDamagedError):
            raise err from None
        report.problems.append(str(e))
    finally:
        conn.close()
    return report
