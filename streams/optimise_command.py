"""``ioe coefficients optimise``: next year's coefficient file from last year's hourly data.

Reads the same Datadis-style CSVs as ``ioe settle`` (its readers), lays the history on the target
year's calendar, optimises (:mod:`streams.energy.optimise`), writes the official file with
:func:`ioe.coefficients.write_file`, and with ``--report`` settles the current and the optimised
coefficients with ``ioe settle``'s own code on the same (mapped) history, so the gain shown is
what the settlement would say, not what the optimiser believes.
Exit codes: 0 written, 2 bad input or an infeasible request.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
    map_to_year,
    month_of_hours,
    optimise,
    round_betas,
    target_hour_starts,
)
from streams.settle import HourValue, SettleError, read_series_file, settle, summarize

BAD_INPUT = 2
DEFAULT_PRICES = Prices(energy_eur_kwh=0.15, surplus_eur_kwh=0.05)
CAVEAT = ("note: computed on last year's data laid on the target year's calendar; next year's "
          "gain is an estimate (weather and habits change).")
REPORT_HEADER = ("scenario", "cups", "consumption_kwh", "assigned_kwh", "self_consumed_kwh",
                 "surplus_kwh", "grid_import_kwh", "energy_term_eur", "savings_eur")


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
    parser.add_argument("--mode", choices=MODES, default="hourly")
    parser.add_argument("--objective", choices=OBJECTIVES, default="self-consumption")
    parser.add_argument("--keep-annual-shares", action=argparse.BooleanOptionalAction,
                        default=True, help="each member keeps its annual share (±0.1 %%); "
                                           "energy moves between hours, never between members")
    parser.add_argument("--min-share", type=float, default=0.0, metavar="X",
                        help="floor for every member's β in every hour")
    parser.add_argument("--price-energy", type=float, metavar="EUR_PER_KWH",
                        help="energy price (default: registry, else 0.15)")
    parser.add_argument("--price-surplus", type=float, metavar="EUR_PER_KWH",
                        help="surplus compensation price (default: registry, else 0.05)")
    parser.add_argument("--registry", metavar="FILE",
                        help="community registry YAML to take prices from (matched by CAU)")
    parser.add_argument("--report", action="store_true",
                        help="settle current vs optimised coefficients on the history")
    parser.add_argument("--report-csv", metavar="FILE", help="the report as CSV")
    parser.add_argument("--write-mapped", metavar="DIR",
                        help="write the history laid on the target year as consumption_<YYYY>"
                             ".csv and generation_<YYYY>.csv (to settle the file yourself)")
    parser.add_argument("--timezone", default="Europe/Madrid", help=argparse.SUPPRESS)


# -- inputs --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Inputs:
    current: CoefficientSchedule
    problem: Problem
    target_starts: tuple[int, ...]
    plant_cups: str
    notes: tuple[str, ...]


def cau_of(path: str | Path) -> str:
    return Path(path).stem.rsplit("_", 1)[0]


def annual_shares(current: CoefficientSchedule, members: Sequence[str], year: int,
                  generation: np.ndarray) -> np.ndarray:
    """Static: the β. Hourly (of the target year): each member's share of the year's energy."""
    if current.kind == "static":
        return np.array([float(current.by_cups[m]) for m in members])  # type: ignore[arg-type]
    if current.year != year:
        raise OptimiseError(f"{current.source}: an hourly current file must be for {year} "
                            f"(it is for {current.year}); convert it or pass a static file")
    betas = np.array([list(current.by_cups[m]) for m in members])  # type: ignore[arg-type]
    g = np.maximum(generation, 0.0)
    return (betas @ g) / g.sum() if g.sum() > 0 else betas.mean(axis=1)


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
    mapping = map_to_year(starts, args.year, tz)
    g = g_hist[mapping.history_index]
    c = c_hist[:, mapping.history_index]
    targets = target_hour_starts(args.year, tz)
    shares = annual_shares(current, members, args.year, g)
    problem = Problem(members, c, g, shares, month_of_hours(targets, tz))
    notes = [f"history: {len(starts)} hours from {len({d for _, d in mapping.days})} days, "
             f"laid on {mapping.hours} hours of {args.year}"]
    if dropped:
        notes.append(f"{dropped} consumption rows outside the generation hours ignored")
    return Inputs(current, problem, tuple(targets), generation[0].cups, tuple(notes))


def prices_from(args: argparse.Namespace) -> Prices:
    """Flags first, then the registry's ``Community.prices``, then the defaults."""
    base = DEFAULT_PRICES
    if args.registry:
        from ioe.registry import load_registry

        registry = load_registry(args.registry)
        cau = cau_of(args.current)
        for community in registry.communities.values():
            if community.cau == cau and community.prices:
                base = Prices(community.prices.get("energy_eur_kwh", base.energy_eur_kwh),
                              community.prices.get("surplus_eur_kwh", base.surplus_eur_kwh))
    return Prices(args.price_energy if args.price_energy is not None else base.energy_eur_kwh,
                  args.price_surplus if args.price_surplus is not None
                  else base.surplus_eur_kwh)


# -- output --------------------------------------------------------------------------------------
def to_schedule(solution: Solution, problem: Problem, mode: str, year: int, floor: float,
                source: str) -> CoefficientSchedule:
    units = round_betas(solution.betas, floor)
    if mode == "static":
        return CoefficientSchedule("static", {m: int(units[i, 0]) / UNITS
                                              for i, m in enumerate(problem.members)},
                                   year=year, source=source)
    return CoefficientSchedule("hourly", {m: (units[i] / UNITS).tolist()
                                          for i, m in enumerate(problem.members)},
                               year=year, source=source)


def out_path(args: argparse.Namespace) -> Path:
    path = Path(args.out)
    if path.is_dir():
        return path / f"{cau_of(args.current)}_{args.year}.txt"
    return path


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
    directory.mkdir(parents=True, exist_ok=True)
    for name, column, rows in (("consumption", "consumption_kwh", consumption),
                               ("generation", "generation_kwh", generation)):
        lines = [f"cups;date;time;{column}"] + [f"{r.cups};{r.date};{r.time};{r.kwh:.6f}"
                                                for r in rows]
        (directory / f"{name}_{year}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class ReportRow:
    scenario: str
    cups: str
    consumption_kwh: float
    assigned_kwh: float
    self_consumed_kwh: float
    surplus_kwh: float
    grid_import_kwh: float
    energy_term_eur: float
    savings_eur: float


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
    totals = [math.fsum(getattr(r, f) for r in out) for f in REPORT_HEADER[2:]]
    out.append(ReportRow(name, "community", *totals))
    return out


def report_lines(current: list[ReportRow], optimised: list[ReportRow]) -> Iterable[str]:
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
    ratio_a = a.self_consumed_kwh / a.assigned_kwh * 100 if a.assigned_kwh else 0.0
    ratio_b = b.self_consumed_kwh / b.assigned_kwh * 100 if b.assigned_kwh else 0.0
    yield (f"gain: {gain:+.1f} kWh self-consumed a year ({share:+.1f} %; self-consumption "
           f"{ratio_a:.1f} % → {ratio_b:.1f} % of generation), "
           f"{b.savings_eur - a.savings_eur:+.2f} € saved a year")
    yield CAVEAT


def report_csv(rows: Iterable[ReportRow]) -> str:
    lines = [";".join(REPORT_HEADER)]
    for r in rows:
        lines.append(";".join([r.scenario, r.cups] + [f"{getattr(r, f):.6f}"
                                                      for f in REPORT_HEADER[2:]]))
    return "\n".join(lines) + "\n"


# -- the command ---------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    tz = args.timezone
    try:
        inputs = load_inputs(args)
        prices = prices_from(args)
        options = Options(args.mode, args.objective, args.keep_annual_shares, args.min_share,
                          prices.energy_eur_kwh, prices.surplus_eur_kwh)
        solution = optimise(inputs.problem, options)
        path = out_path(args)
        schedule = to_schedule(solution, inputs.problem, args.mode, args.year, args.min_share,
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
    print(f"{path}: {args.mode} coefficients for {args.year}, {len(inputs.problem.members)} "
          f"CUPS; {solution.method} in {solution.solve_s:.2f} s; self-consumption "
          f"{solution.outcome.total_self_consumed_kwh:.3f} kWh on the mapped history")
    if args.report or args.report_csv or args.write_mapped:
        consumption, generation = mapped_rows(inputs, tz)
        if args.write_mapped:
            write_mapped(Path(args.write_mapped), args.year, consumption, generation)
        if args.report or args.report_csv:
            current = settle_scenario("current", inputs.current, consumption, generation,
                                      prices, tz)
            optimised = settle_scenario("optimised", schedule, consumption, generation,
                                        prices, tz)
            if args.report:
                print(f"prices: energy {prices.energy_eur_kwh} €/kWh, surplus "
                      f"{prices.surplus_eur_kwh} €/kWh")
                for line in report_lines(current, optimised):
                    print(line)
            if args.report_csv:
                Path(args.report_csv).write_text(report_csv([*current, *optimised]),
                                                 encoding="utf-8")
    return 0
