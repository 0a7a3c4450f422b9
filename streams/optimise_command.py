"""``ioe coefficients optimise``: next year's coefficient file from last year's hourly data.

Reads the same Datadis-style CSVs as ``ioe settle`` (its readers), lays the history on the target
year's calendar, optimises (:mod:`streams.energy.optimise`), writes the official file with
:func:`ioe.coefficients.write_file` — hourly lines ``CUPS;HHHH;0,xxxxxx`` for every hour of the
target year, in both modes — and with ``--report`` settles the current and the optimised
coefficients with ``ioe settle``'s own code on the same (mapped) history, so the gain shown is
what the settlement says, not what the optimiser believes.
Exit codes: 0 written, 2 bad input or an infeasible request.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from ioe.coefficients import (
    HOUR_MS,
    CoefficientError,
    CoefficientSchedule,
    cups_base,
    parse_file,
    write_file,
)
from ioe.datadis_time import end_label
from streams.energy.monthly import HourBalance, Prices, monthly_summaries
from streams.energy.optimise import (
    MODES,
    OBJECTIVES,
    UNITS,
    OptimiseError,
    Options,
    Problem,
    Solution,
    YearMapping,
    evaluate,
    map_to_year,
    month_of_hours,
    optimise,
    round_betas,
    target_hour_starts,
)
from streams.energy.report import COMMUNITY_ROW, FIGURES, ReportRow, report_csv
from streams.settle import HourValue, SettleError, read_series_file, settle, summarize

BAD_INPUT = 2
DEFAULT_PRICES = Prices(energy_eur_kwh=0.15, surplus_eur_kwh=0.05)
CAVEAT = ("note: computed on last year's data laid on the target year's calendar; next year's "
          "gain is an estimate (weather and habits change).")
_OFFICIAL_NAME = re.compile(r"^([A-Z0-9]+)_(\d{4})\.txt$")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--consumption", required=True, metavar="FILE",
                        help="last year's CSV cups;date;time;consumption_kwh (Datadis)")
    parser.add_argument("--generation", required=True, metavar="FILE",
                        help="last year's CSV cups;date;time;generation_kwh (plant net)")
    parser.add_argument("--current", required=True, metavar="FILE",
                        help="coefficient file in force; its shares are the annual shares")
    parser.add_argument("--year", required=True, type=int, help="target year of the new file")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="output file, or a directory to write <CAU>_<YYYY>.txt into")
    parser.add_argument("--mode", choices=MODES, default="hourly",
                        help="hourly: one β per member and hour (default); static: the best "
                             "single β per member (still written as hourly lines)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="self-consumption",
                        help="maximise kWh self-consumed (default) or € saved (registry prices)")
    parser.add_argument("--keep-annual-shares", action=argparse.BooleanOptionalAction,
                        default=True, help="each member keeps its annual share of the plant "
                                           "(±0.1 %%): energy moves between hours, never between "
                                           "members, and no member ends up worse off than "
                                           "under --current (default on)")
    parser.add_argument("--min-share", type=float, default=0.0, metavar="X",
                        help="floor for every member's β in every hour (0…1/members)")
    parser.add_argument("--price-energy", type=float, metavar="EUR_PER_KWH",
                        help="energy price (default: registry, else 0.15)")
    parser.add_argument("--price-surplus", type=float, metavar="EUR_PER_KWH",
                        help="surplus compensation price (default: registry, else 0.05)")
    parser.add_argument("--registry", metavar="FILE",
                        help="community registry YAML to take prices from, matched by CAU "
                             "(default: $IOE_REGISTRY when it names the community)")
    parser.add_argument("--report", action="store_true",
                        help="settle current vs optimised coefficients on the history: a table, "
                             "and a CSV (--report-csv, default <OUT>.report.csv)")
    parser.add_argument("--report-csv", metavar="FILE", help="where to write the report CSV")
    parser.add_argument("--write-mapped", metavar="DIR",
                        help="write the history laid on the target year as consumption_<YYYY>"
                             ".csv and generation_<YYYY>.csv (to settle the file yourself)")
    parser.add_argument("--timezone", default="Europe/Madrid", help=argparse.SUPPRESS)


# -- inputs --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Inputs:
    current: CoefficientSchedule  # as settled in the report: hourly of the target year if hourly
    problem: Problem
    target_starts: tuple[int, ...]
    plant_cups: str
    notes: tuple[str, ...]


def cau_of(path: str | Path) -> str:
    return Path(path).stem.rsplit("_", 1)[0]


def current_on_target(current: CoefficientSchedule, members: Sequence[str],
                      history_starts: Sequence[int], mapping: YearMapping,
                      tz: str) -> np.ndarray:
    """β of the file in force on every target hour (members × hours).

    Static: its β every hour. Hourly for the target year: as written. Hourly for another year
    (typically the history's own year): each target hour takes the β of the history hour that
    models it, so the comparison is the file that really applied to that history.
    """
    hours = mapping.hours
    if current.kind == "static":
        return np.array([[float(current.by_cups[m])] * hours  # type: ignore[arg-type]
                         for m in members])
    if current.year == mapping.year:
        return np.array([list(current.by_cups[m]) for m in members])  # type: ignore[arg-type]
    try:
        starts = [history_starts[k] for k in mapping.history_index]
        return np.array([[current.beta(m, ms, tz) for ms in starts] for m in members])
    except CoefficientError:
        raise OptimiseError(f"{current.source}: an hourly current file must be for {mapping.year} "
                            "or for the history's year") from None


def annual_shares(baseline: np.ndarray, generation: np.ndarray) -> np.ndarray:
    """Each member's share of the year's energy under the file in force (its β when static)."""
    g = np.maximum(generation, 0.0)
    if g.sum() <= 0:
        return np.asarray(baseline.mean(axis=1))
    shares = (baseline @ g) / g.sum()
    return np.asarray(shares / shares.sum())


def load_inputs(args: argparse.Namespace) -> Inputs:
    tz = args.timezone
    current = parse_file(args.current)
    members = tuple(current.by_cups)
    key_of = {cups_base(m): i for i, m in enumerate(members)}
    consumption = read_series_file(args.consumption, "consumption", tz)
    generation = read_series_file(args.generation, "generation", tz)
    if not generation:
        raise SettleError(f"{args.generation}: no generation rows")
    starts = sorted({row.end_ms - HOUR_MS for row in generation})
    column = {ms: k for k, ms in enumerate(starts)}
    g_hist = np.zeros(len(starts))
    for row in generation:
        g_hist[column[row.end_ms - HOUR_MS]] += row.kwh
    c_hist = np.zeros((len(members), len(starts)))
    seen = np.zeros((len(members), len(starts)), dtype=bool)
    dropped = 0
    for row in consumption:
        member = key_of.get(cups_base(row.cups))
        if member is None:
            raise SettleError(f"{row.where}: unknown CUPS {row.cups} (not in {args.current})")
        k = column.get(row.end_ms - HOUR_MS)
        if k is None:
            dropped += 1
            continue
        c_hist[member, k] += row.kwh
        seen[member, k] = True
    mapping = map_to_year(starts, args.year, tz)
    g = g_hist[mapping.history_index]
    c = c_hist[:, mapping.history_index]
    targets = target_hour_starts(args.year, tz)
    baseline = current_on_target(current, members, starts, mapping, tz)
    shares = annual_shares(baseline, g)
    problem = Problem(members, c, g, shares, month_of_hours(targets, tz), baseline)
    used = len({d for _, d in mapping.days})
    notes = [f"history: {len(starts)} hours ({len({r.date for r in generation})} days); "
             f"{used} of those days model the {len(mapping.days)} days ({mapping.hours} hours) "
             f"of {args.year}, weekday and season alike"]
    if dropped:
        notes.append(f"{dropped} consumption rows outside the generation hours ignored")
    missing = int((~seen).sum())
    if missing:
        notes.append(f"{missing} member-hours without a consumption row taken as 0 kWh")
    # the file in force, as the report settles it: in force on every hour of the target year
    if current.kind == "hourly":
        schedule = CoefficientSchedule("hourly", {m: baseline[i].tolist()
                                                  for i, m in enumerate(members)},
                                       date(args.year, 1, 1), args.year, current.source)
    else:
        schedule = CoefficientSchedule("static", current.by_cups, date(args.year, 1, 1),
                                       None, current.source)
    return Inputs(schedule, problem, tuple(targets), generation[0].cups, tuple(notes))


def prices_from(args: argparse.Namespace) -> tuple[Prices, str]:
    """Flags first, then the registry's ``Community.prices`` (matched by CAU), then the
    defaults; with where they came from."""
    from ioe.registry import RegistryError, load_registry
    from ioe.settings import get_settings

    base, origin = DEFAULT_PRICES, "defaults"
    path = args.registry or get_settings().registry_path
    if args.registry or Path(path).is_file():
        try:
            registry = load_registry(path)
        except (RegistryError, OSError) as exc:
            if args.registry:
                raise OptimiseError(f"{path}: {exc}") from None
            registry = None
        cau = cau_of(args.current)
        for community in registry.communities.values() if registry else ():
            if community.cau == cau and community.prices:
                base = Prices(community.prices.get("energy_eur_kwh", base.energy_eur_kwh),
                              community.prices.get("surplus_eur_kwh", base.surplus_eur_kwh))
                origin = f"registry {path} ({community.id})"
    prices = Prices(args.price_energy if args.price_energy is not None else base.energy_eur_kwh,
                    args.price_surplus if args.price_surplus is not None
                    else base.surplus_eur_kwh)
    if args.price_energy is not None or args.price_surplus is not None:
        origin = "flags" if origin == "defaults" else f"flags and {origin}"
    return prices, origin


# -- output --------------------------------------------------------------------------------------
def to_schedule(solution: Solution, problem: Problem, year: int, floor: float,
                source: str) -> tuple[CoefficientSchedule, np.ndarray]:
    """The official hourly schedule (6 decimals, Σ = 1 every hour) and its β as floats."""
    units = round_betas(solution.betas, floor)
    betas = units / UNITS
    return CoefficientSchedule("hourly", {m: betas[i].tolist()
                                          for i, m in enumerate(problem.members)},
                               year=year, source=source), betas


def out_path(args: argparse.Namespace) -> Path:
    path = Path(args.out)
    if path.is_dir() or args.out.endswith(("/", os.sep)):
        path.mkdir(parents=True, exist_ok=True)
        return path / f"{cau_of(args.current)}_{args.year}.txt"
    return path


def name_note(path: Path, year: int) -> str | None:
    match = _OFFICIAL_NAME.match(path.name)
    if match and int(match.group(2)) == year:
        return None
    return (f"note: the distributor expects the name <CAU>_{year}.txt (and `ioe coefficients "
            f"validate` then needs --year {year})")


def mapped_rows(inputs: Inputs, tz: str) -> tuple[list[HourValue], list[HourValue]]:
    """The mapped history as ``ioe settle`` input rows: every member, every target hour."""
    labels = [end_label(ms + HOUR_MS, tz) for ms in inputs.target_starts]
    consumption = [HourValue("mapped", h, cups, day.strftime("%Y/%m/%d"), time, ms + HOUR_MS,
                             float(inputs.problem.consumption[i, h]))
                   for i, cups in enumerate(inputs.problem.members)
                   for h, (ms, (day, time)) in enumerate(zip(inputs.target_starts, labels,
                                                             strict=True))]
    generation = [HourValue("mapped", h, inputs.plant_cups, day.strftime("%Y/%m/%d"), time,
                            ms + HOUR_MS, float(inputs.problem.generation[h]))
                  for h, (ms, (day, time)) in enumerate(zip(inputs.target_starts, labels,
                                                            strict=True))]
    return consumption, generation


def write_mapped(directory: Path, year: int, consumption: Iterable[HourValue],
                 generation: Iterable[HourValue]) -> None:
    """Full float precision (``repr``), so settling these files reproduces the figures."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, column, rows in (("consumption", "consumption_kwh", consumption),
                               ("generation", "generation_kwh", generation)):
        lines = [f"cups;date;time;{column}"] + [f"{r.cups};{r.date};{r.time};{r.kwh!r}"
                                                for r in rows]
        (directory / f"{name}_{year}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def settle_scenario(name: str, schedule: CoefficientSchedule, consumption: list[HourValue],
                    generation: list[HourValue], prices: Prices, tz: str) -> list[ReportRow]:
    """Settle with ``ioe settle``'s functions, then € per member with simplified compensation
    per billing month (streams.energy.monthly); the last row is the community."""
    rows = settle([schedule], consumption, generation, tz=tz)
    summary = summarize(rows)
    months = monthly_summaries(
        (HourBalance(r.cups, r.start_ms, r.consumption_kwh, r.assigned_kwh, r.self_consumed_kwh,
                     r.surplus_kwh, r.grid_import_kwh) for r in rows), prices, tz)
    euros: dict[str, tuple[float, float]] = {}
    for m in months:
        term, saved = euros.get(m.member, (0.0, 0.0))
        euros[m.member] = (term + m.energy_term_eur, saved + m.savings_eur)
    out = [ReportRow(name, t.cups, t.consumption_kwh, t.assigned_kwh, t.self_consumed_kwh,
                     t.surplus_kwh, t.grid_import_kwh, *euros.get(t.cups, (0.0, 0.0)))
           for t in summary.members]
    totals = [math.fsum(getattr(r, f) for r in out) for f in FIGURES]
    out.append(ReportRow(name, COMMUNITY_ROW, *totals))
    return out


def report_lines(current: list[ReportRow], optimised: list[ReportRow],
                 generation_kwh: float) -> Iterable[str]:
    yield (f"{'cups':<22} {'self-consumed kWh':>21} {'surplus kWh':>19} {'import kWh':>19} "
           f"{'savings €':>17} {'assigned Δ':>10}")
    yield f"{'':<22} {'current → optimised':>21}"
    for a, b in zip(current, optimised, strict=True):
        delta = (b.assigned_kwh / a.assigned_kwh - 1) * 100 if a.assigned_kwh else 0.0
        yield (f"{a.cups:<22} {a.self_consumed_kwh:>10.1f}→{b.self_consumed_kwh:<10.1f} "
               f"{a.surplus_kwh:>9.1f}→{b.surplus_kwh:<9.1f} "
               f"{a.grid_import_kwh:>9.1f}→{b.grid_import_kwh:<9.1f} "
               f"{a.savings_eur:>8.2f}→{b.savings_eur:<8.2f} {delta:>+9.3f}%")
    a, b = current[-1], optimised[-1]
    gain = b.self_consumed_kwh - a.self_consumed_kwh
    share = gain / a.self_consumed_kwh * 100 if a.self_consumed_kwh else 0.0
    ratio_a = a.self_consumed_kwh / generation_kwh * 100 if generation_kwh > 0 else 0.0
    ratio_b = b.self_consumed_kwh / generation_kwh * 100 if generation_kwh > 0 else 0.0
    yield (f"gain: {gain:+.1f} kWh self-consumed a year ({share:+.1f} %; self-consumption "
           f"{ratio_a:.1f} % → {ratio_b:.1f} % of generation), "
           f"{b.savings_eur - a.savings_eur:+.2f} € saved a year")
    yield CAVEAT


# -- the command ---------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    tz = args.timezone
    try:
        inputs = load_inputs(args)
        prices, origin = prices_from(args)
        options = Options(args.mode, args.objective, args.keep_annual_shares, args.min_share,
                          prices.energy_eur_kwh, prices.surplus_eur_kwh)
        solution = optimise(inputs.problem, options)
        path = out_path(args)
        schedule, betas = to_schedule(solution, inputs.problem, args.year, args.min_share,
                                      str(path))
        write_file(schedule, path)
    except (SettleError, CoefficientError, OptimiseError) as exc:
        print(f"ioe coefficients optimise: {exc}", file=sys.stderr)
        return BAD_INPUT
    except OSError as exc:
        print(f"ioe coefficients optimise: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return BAD_INPUT
    for note in (*inputs.notes, *solution.notes):
        print(note)
    written = evaluate(betas, inputs.problem)
    generation_kwh = float(np.maximum(inputs.problem.generation, 0.0).sum())
    print(f"{path}: {args.mode} coefficients for {args.year} ({args.objective}), "
          f"{len(inputs.problem.members)} CUPS × {inputs.problem.generation.size} hours; "
          f"{solution.method} in {solution.solve_s:.2f} s")
    print(f"self-consumption on the mapped history: {written.total_self_consumed_kwh:.3f} kWh "
          f"of {generation_kwh:.3f} kWh generated")
    naming = name_note(path, args.year)
    if naming:
        print(naming, file=sys.stderr)
    report_csv_path = args.report_csv or (f"{path}.report.csv" if args.report else None)
    if args.report or report_csv_path or args.write_mapped:
        consumption, generation = mapped_rows(inputs, tz)
        if args.write_mapped:
            write_mapped(Path(args.write_mapped), args.year, consumption, generation)
        if report_csv_path:
            current = settle_scenario("current", inputs.current, consumption, generation,
                                      prices, tz)
            optimised = settle_scenario("optimised", schedule, consumption, generation,
                                        prices, tz)
            if args.report:
                print(f"prices ({origin}): energy {prices.energy_eur_kwh} €/kWh, surplus "
                      f"{prices.surplus_eur_kwh} €/kWh")
                for line in report_lines(current, optimised, generation_kwh):
                    print(line)
            try:
                Path(report_csv_path).write_text(report_csv([*current, *optimised]),
                                                 encoding="utf-8")
            except OSError as exc:
                print(f"ioe coefficients optimise: {report_csv_path}: {exc.strerror}",
                      file=sys.stderr)
                return BAD_INPUT
            print(f"report CSV: {report_csv_path}")
    return 0
