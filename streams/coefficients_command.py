"""``ioe coefficients``: validate or convert the official distributor coefficient file.

``validate FILE [--year YYYY]`` checks format, CUPS check letters, hours and sums;
``convert --to hourly|static FILE [--year YYYY] --out FILE`` turns a static file into the hourly
form of a year (every hour the same β) or collapses an hourly file whose β never changes;
``optimise --consumption C.csv --generation G.csv --current FILE --year YYYY --out OUT`` writes
next year's coefficients from last year's hourly data (:mod:`streams.optimise_command`).
Exit codes: 0 fine, 2 invalid input (the message names the file and line).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ioe.coefficients import (
    CoefficientError,
    hours_in_year,
    parse_file,
    to_hourly,
    to_static,
    write_file,
)

BAD_INPUT = 2
_OFFICIAL_NAME = re.compile(r"^[A-Z0-9]+_\d{4}\.txt$")


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    validate = actions.add_parser("validate", help="check a coefficient file")
    validate.add_argument("file", metavar="FILE")
    validate.add_argument("--year", type=int,
                          help="year of an hourly file (default: from <CAU>_<YYYY>.txt)")
    convert = actions.add_parser("convert", help="convert between static and hourly files")
    convert.add_argument("file", metavar="FILE")
    convert.add_argument("--to", required=True, choices=("hourly", "static"))
    convert.add_argument("--year", type=int,
                         help="year of the hourly file (default: from <CAU>_<YYYY>.txt)")
    convert.add_argument("--out", required=True, metavar="FILE")
    optimise = actions.add_parser("optimise", help="optimise next year's coefficients from "
                                                   "last year's hourly data")
    from streams import optimise_command  # its arguments live with it

    optimise_command.configure(optimise)


def _validate(args: argparse.Namespace) -> int:
    schedule = parse_file(args.file, year=args.year)
    members = len(schedule.by_cups)
    if schedule.kind == "static":
        print(f"{args.file}: OK, static, {members} CUPS, coefficients sum to 1")
    else:
        hours = hours_in_year(schedule.year or 0)
        print(f"{args.file}: OK, hourly {schedule.year}, {members} CUPS × {hours} hours, "
              "every hour sums to 1")
    if not _OFFICIAL_NAME.match(Path(args.file).name):
        print(f"{args.file}: note: the distributor expects the name <CAU>_<YYYY>.txt",
              file=sys.stderr)
    return 0


def _convert(args: argparse.Namespace) -> int:
    schedule = parse_file(args.file, year=args.year)
    if args.to == "hourly":
        year = args.year or schedule.year
        if year is None:
            raise CoefficientError(f"{args.file}: converting to hourly needs --year YYYY (or a "
                                   "<CAU>_<YYYY>.txt file name)")
        converted = to_hourly(schedule, year)
    else:
        converted = to_static(schedule)
    write_file(converted, args.out)
    print(f"{args.file} → {args.out}: {converted.kind}, {len(converted.by_cups)} CUPS")
    return 0


def _optimise(args: argparse.Namespace) -> int:
    from streams import optimise_command

    return optimise_command.run(args)


ACTIONS = {"validate": _validate, "convert": _convert, "optimise": _optimise}


def run(args: argparse.Namespace) -> int:
    try:
        return ACTIONS[args.action](args)
    except CoefficientError as exc:
        print(f"ioe coefficients: {exc}", file=sys.stderr)
        return BAD_INPUT
    except OSError as exc:
        print(f"ioe coefficients: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return BAD_INPUT
