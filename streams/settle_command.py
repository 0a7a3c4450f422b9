"""``ioe settle``: offline hourly settlement from Datadis-style CSV files.

Exit codes: 0 settled, 2 bad input (the message names the file and line).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ioe.coefficients import CoefficientError, parse_file
from streams.settle import (
    SettleError,
    csv_lines,
    read_series_file,
    settle,
    summarize,
    summary_lines,
)

BAD_INPUT = 2


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--coefficients", required=True, action="append", metavar="FILE",
                        help="official distributor coefficient file <CAU>_<YYYY>.txt (static or "
                             "hourly); repeat for data spanning several years")
    parser.add_argument("--consumption", required=True, metavar="FILE",
                        help="CSV cups;date;time;consumption_kwh (Datadis conventions)")
    parser.add_argument("--generation", required=True, metavar="FILE",
                        help="CSV cups;date;time;generation_kwh (the plant's net generation)")
    parser.add_argument("--out", metavar="FILE", help="output CSV (default: standard output)")
    parser.add_argument("--summary", action="store_true",
                        help="print per-member totals and the community self-consumption ratio "
                             "(to standard error when the CSV goes to standard output)")
    parser.add_argument("--timezone", default="Europe/Madrid", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    tz = args.timezone
    try:
        schedules = [parse_file(path) for path in args.coefficients]
        consumption = read_series_file(args.consumption, "consumption", tz)
        generation = read_series_file(args.generation, "generation", tz)
        rows = settle(schedules, consumption, generation, generation_source=args.generation,
                      tz=tz)
    except (SettleError, CoefficientError) as exc:
        print(f"ioe settle: {exc}", file=sys.stderr)
        return BAD_INPUT
    except OSError as exc:
        print(f"ioe settle: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return BAD_INPUT
    text = "".join(f"{line}\n" for line in csv_lines(rows))
    if args.out:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"ioe settle: {args.out}: cannot write ({exc.strerror})", file=sys.stderr)
            return BAD_INPUT
    else:
        sys.stdout.write(text)
    if args.summary:
        stream = sys.stdout if args.out else sys.stderr
        for line in summary_lines(summarize(rows)):
            print(line, file=stream)
    return 0
