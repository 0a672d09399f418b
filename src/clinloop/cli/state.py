"""``clinloop state backup|check|recover``: back up and check the workstation's database
while ``clinloop serve`` may be serving it (SQLite's online backup API); re-record
accepted masks from their files after losing the database."""
from __future__ import annotations

import argparse

_STATE_HELP = "state folder of `clinloop serve` (its --state-dir; default: $CLINLOOP_STATE or ~/.local/share/clinloop)"


def add_parser(sub) -> None:
    p = sub.add_parser("state", help="back up / check the workstation's state (sessions, accepted masks)",
                       description=__doc__.split("\n\n")[0])
    ss = p.add_subparsers(dest="state_command", metavar="ACTION")
    b = ss.add_parser("backup", help="copy the database to one self-contained file, safe while serving",
                      description="Copy the database with SQLite's online backup API (one consistent snapshot, "
                      "checked with integrity_check). The array folders (images/, masks/, sources/) hold files "
                      "that are never rewritten: copy them with any file tool.")
    b.add_argument("--state", "--state-dir", dest="state", default=None, help=_STATE_HELP)
    b.add_argument("--out", required=True, help="backup file to write (a folder: a time-stamped name in it)")
    b.add_argument("--force", action="store_true", help="replace --out when it exists")
    b.set_defaults(func=run_backup)
    c = ss.add_parser("check", help="check the database and the files it points to",
                      description="SQLite integrity_check, the schema version, and every accepted mask and image "
                      "file a row points to. Exit status: 0 healthy, 1 problems found, 2 no database there.")
    c.add_argument("--state", "--state-dir", dest="state", default=None, help=_STATE_HELP)
    c.set_defaults(func=run_check)
    r = ss.add_parser("recover", help="re-record accepted masks from their files (server stopped)",
                      description="Add to the database (made when missing) every accepted mask whose record "
                      "(masks/<session>/<n>.json) it does not hold, with the session it belongs to: the way back "
                      "after moving a damaged database aside, or after restoring a backup older than the last "
                      "accepts. Stop the server first. Exit status: 0 done, 1 some records left out, 2 not a state "
                      "folder (neither a database nor accepted masks: nothing is created there).")
    r.add_argument("--state", "--state-dir", dest="state", default=None, help=_STATE_HELP)
    r.set_defaults(func=run_recover)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _state(args: argparse.Namespace):
    from pathlib import Path

    from clinloop.server.store import default_state_dir

    return Path(args.state) if args.state else default_state_dir()


def run_backup(args: argparse.Namespace) -> int:
    from clinloop.server.db import backup

    try:
        r = backup(_state(args), args.out, overwrite=args.force)
    except ValueError as e:  # the destination, not the database, failed: say so (the store names the database)
        cause = e.__context__
        if isinstance(cause, OSError) and getattr(cause, "destination", None):
            raise ValueError(f"--out {args.out}: {cause}; check that its folder exists and is writable") from None
        raise
    counts = ", ".join(f"{v} {k}" for k, v in r.counts.items())
    print(f"backed up {r.source} -> {r.dest} ({r.bytes} bytes; integrity ok; {counts})")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from clinloop.server.db import check

    r = check(_state(args))
    for line in r.lines():
        print(line)
    return 0 if r.ok else 1


def run_recover(args: argparse.Namespace) -> int:
    from clinloop.server.recover import recover_accepted

    state = _state(args)
    if not state.is_dir():
        raise FileNotFoundError(f"{state}: no such state folder")
    r = recover_accepted(state)
    print(f"{state}: {r.recorded} accepted mask(s) re-recorded ({r.sessions} session(s) re-created), "
          f"{r.already} already recorded")
    for p in r.problems:
        print(f"problem: {p}")
    return 1 if r.problems else 0
