"""``clinloop state backup|check``: back up and check the workstation's database
while ``clinloop serve`` may be serving it (SQLite's online backup API)."""
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
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _state(args: argparse.Namespace):
    from pathlib import Path

    from clinloop.server.store import default_state_dir

    return Path(args.state) if args.state else default_state_dir()


def run_backup(args: argparse.Namespace) -> int:
    from clinloop.server.db import backup

    r = backup(_state(args), args.out, overwrite=args.force)
    counts = ", ".join(f"{v} {k}" for k, v in r.counts.items())
    print(f"backed up {r.source} -> {r.dest} ({r.bytes} bytes; integrity ok; {counts})")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from clinloop.server.db import check

    r = check(_state(args))
    for line in r.lines():
        print(line)
    return 0 if r.ok else 1
