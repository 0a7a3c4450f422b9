"""``ioe stack up|down|status``: the local servers (see :mod:`ioe.stack`)."""

from __future__ import annotations

import argparse
import sys

from ioe import stack


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--only", action="append", choices=[s.name for s in stack.SERVERS],
                        help="act on one server only (repeatable)")
    parser.add_argument("--no-schema", action="store_true",
                        help="with 'up': do not create topics nor apply migrations")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "up":
            stack.up(only=args.only)
            if not args.no_schema and not args.only:
                from ioe.commands.schema import apply_schema

                apply_schema()
            return 0
        if args.action == "down":
            stack.down()
            return 0
        return 0 if stack.status() else 1
    except stack.StackError as exc:
        print(f"ioe stack {args.action}: {exc}", file=sys.stderr)
        return 1
