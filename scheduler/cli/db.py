"""``trainq db``: the registry itself. ``trainq db copy --to URL [--db SRC]`` copies an SQLite
registry into an empty Postgres one (``scheduler.store.copy``) and says what it copied."""

from __future__ import annotations

import argparse
import json

from ..config import Settings
from ..store.url import parse_db_url


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``db`` and its actions on the top-level subcommands."""
    p = sub.add_parser("db", help="the job registry: copy an SQLite registry into Postgres")
    actions = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    copy = actions.add_parser("copy", help="copy an SQLite registry (and its event log) into an EMPTY Postgres one",
                              description="Copy every job, transition, report, checkpoint, attempt, request key,"
                              " stored value and event of an SQLite registry into an empty Postgres registry, in"
                              " one transaction; a target that holds anything is refused. Then start"
                              " `trainq serve --db URL` against the target.")
    copy.add_argument("--to", required=True, metavar="URL", help="postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    copy.add_argument("--db", default=None, metavar="SRC",
                      help="the SQLite registry to copy (default $TRAINQ_DB or ~/.trainq/trainq.db)")


def cmd_db(args: argparse.Namespace) -> int:
    """Run a ``trainq db`` action; typed errors reach ``main``, which prints them."""
    from ..store.copy import copy_sqlite_to_postgres

    source = args.db or Settings().db_path
    target = parse_db_url(args.to)  # refused here, before the source is touched
    counts = copy_sqlite_to_postgres(source, args.to)
    if args.json:
        print(json.dumps({"source": parse_db_url(source).shown, "target": target.shown, "copied": counts}))
        return 0
    print(f"trainq: copied {parse_db_url(source).shown} into {target.shown}")
    width = max(len(name) for name in counts)
    for name, n in counts.items():
        print(f"  {name:<{width}}  {n:>10,}")
    return 0
