"""Hourly (or static) distribution coefficients that maximise what a community self-consumes.

Orden TED/1247/2021 lets a community give each member one β per hour of the year. Given last
year's hourly consumption per member and the plant's hourly net generation, this module

1. lays the history on the target year's calendar (:func:`map_to_year`): every target day takes
   the history day of the same day type (weekday, Sundays and national holidays together) nearest
   in the season, and every hour the history hour with the same local wall-clock start — so a
   Monday in June is modelled by a Monday in June, and both clock changes are handled by working
   in elapsed hours (DESIGN.md §1);
2. solves a linear programme with HiGHS (:func:`optimise`) for the assigned energy
   ``A(i,h) = β(i,h)·G(h)`` under the settlement formulas of DESIGN.md §1;
3. turns the result into 6-decimal coefficients that sum to exactly 1 every hour
   (:func:`round_betas`).

Pure: arrays in, typed results out, no I/O. Energies are kWh.

Why the problem decomposes (and the solver sees only what it must):

* a member's floor ``--min-share`` is assigned first (its self-consumption is ``min(f, C)``), so
  the rest only deals with the remaining demand ``C' = max(C − f, 0)`` and supply
  ``G' = G·(1 − n·floor)``;
* *hourly, self-consumption, no annual shares*: every hour is independent and the optimum is
  closed form — meet every remaining demand, ration proportionally when the plant is short;
* *hourly, self-consumption, annual shares kept*: hours couple only through each member's annual
  total ``T(i) = share(i)·ΣG``. Self-consumption is then a bipartite max-flow
  ``max Σ s  s.t. Σ_i s(i,h) ≤ G'(h), Σ_h s(i,h) ≤ T'(i), 0 ≤ s ≤ C'`` (one variable per
  member-sunny-hour with demand, only hours + 2n rows), solved as an LP by HiGHS's interior
  point method. With the file in force as baseline, ``Σ_h s(i,h) ≥`` what the baseline
  self-consumes for member ``i``: free, since the baseline is a feasible flow and augmenting
  paths never lower the flow through a member. Any split of the left-over surplus keeps the
  optimum, so a small member-month LP spends it where simplified compensation pays most, and a
  proportional fill spreads each month's part over its hours (rows and columns add up exactly);
* the *savings* objective values surplus through simplified compensation, which is capped per
  member and billing month, so it keeps explicit surplus variables and one compensation variable
  per member-month;
* *static*: one β per member, ``s(i,h) ≤ β(i)·G(h)``. With annual shares kept the answer is the
  current file itself (a static share *is* the annual share).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from ioe.coefficients import HOUR_MS, hours_in_year, year_start_ms
from ioe.holidays import holidays

MODES = ("hourly", "static")
OBJECTIVES = ("self-consumption", "savings")
UNITS = 1_000_000  # 6 decimals
_REFERENCE_LEAP_YEAR = 2000  # day-of-year reference in which 29 February exists


class OptimiseError(ValueError):
    """A problem that cannot be optimised as asked (infeasible floor, no data for a day…)."""


# -- calendar mapping ----------------------------------------------------------------------------
@dataclass(frozen=True)
class YearMapping:
    """Which history hour models each hour of the target year.

    ``history_index[h]`` is the index (into the history's hour starts) of target hour ``h + 1``;
    ``days`` pairs every target local day with the history day that models it.
    """

    year: int
    tz: str
    history_index: np.ndarray
    days: tuple[tuple[date, date], ...]

    @property
    def hours(self) -> int:
        return len(self.history_index)


def day_type(day: date) -> int:
    """0…5 Monday…Saturday; 6 for Sundays *and* national holidays (people are at home alike)."""
    return 6 if day.weekday() == 6 or day in holidays(day.year) else day.weekday()


def _season_day(day: date) -> int:
    """Day of the year in a leap reference year, so 1 March is the same number every year."""
    return date(_REFERENCE_LEAP_YEAR, day.month, day.day).timetuple().tm_yday


def _season_distance(a: date, b: date) -> int:
    d = abs(_season_day(a) - _season_day(b))
    return min(d, 366 - d)


def _wall_hours(starts_ms: Sequence[int], tz: str) -> list[tuple[date, int, int]]:
    """(local date, local hour, fold) of each hour start: fold 1 is the repeated October hour."""
    zone = ZoneInfo(tz)
    out = []
    for ms in starts_ms:
        local = datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone)
        before = datetime.fromtimestamp((ms - HOUR_MS) / 1000, UTC).astimezone(zone)
        fold = 1 if (before.date(), before.hour) == (local.date(), local.hour) else 0
        out.append((local.date(), local.hour, fold))
    return out


def local_day_hours(day: date, tz: str = "Europe/Madrid") -> int:
    """23, 24 or 25: the elapsed hours of a local day."""
    zone = ZoneInfo(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    end = datetime.fromordinal(day.toordinal() + 1).replace(tzinfo=zone)
    return round((end.timestamp() - start.timestamp()) / 3600)


def target_hour_starts(year: int, tz: str = "Europe/Madrid") -> list[int]:
    """UTC start of hours 0001…8760/8784 of ``year`` (elapsed hours from 1 January 00:00)."""
    start = year_start_ms(year, tz)
    return [start + k * HOUR_MS for k in range(hours_in_year(year))]


def pick_history_day(target: date, by_type: dict[int, list[date]]) -> date:
    """The history day of the same type nearest in the season (ties: the more recent day).

    Only complete history days are candidates (unless none is). Falls back to any day of the same weekday class (weekday vs free day) and then to any day,
    so a short history still maps; the choice is reported through :class:`YearMapping`.
    """
    kind = day_type(target)
    pools = (by_type.get(kind, []),
             [d for t, days in by_type.items() if (t >= 5) == (kind >= 5) for d in days],
             [d for days in by_type.values() for d in days])
    for pool in pools:
        if pool:
            return min(pool, key=lambda d: (_season_distance(d, target), -d.toordinal()))
    raise OptimiseError("the history has no day to model the target year with")


def map_to_year(history_starts_ms: Sequence[int], year: int,
                tz: str = "Europe/Madrid") -> YearMapping:
    """Lay an hourly history on the calendar of ``year`` (see the module docstring).

    Within a day, a target hour takes the history hour with the same local start; the repeated
    October hour takes the history's repeated hour when it has one, else the same wall hour; the
    March hour a 23-hour history day lacks (02:00) takes the hour before it.
    """
    walls = _wall_hours(history_starts_ms, tz)
    by_day: dict[date, dict[tuple[int, int], int]] = {}
    for index, (day, hour, fold) in enumerate(walls):
        by_day.setdefault(day, {})[(hour, fold)] = index
    complete = [d for d in sorted(by_day) if len(by_day[d]) == local_day_hours(d, tz)]
    by_type: dict[int, list[date]] = {}
    for day in complete or sorted(by_day):  # a history of partial days only still maps
        by_type.setdefault(day_type(day), []).append(day)
    targets = target_hour_starts(year, tz)
    chosen: dict[date, date] = {}
    source = np.empty(len(targets), dtype=np.int64)
    for k, (day, hour, fold) in enumerate(_wall_hours(targets, tz)):
        if day not in chosen:
            chosen[day] = pick_history_day(day, by_type)
        source[k] = _hour_in_day(by_day[chosen[day]], hour, fold)
    return YearMapping(year, tz, source, tuple(sorted(chosen.items())))


def _hour_in_day(hours: dict[tuple[int, int], int], hour: int, fold: int) -> int:
    for key in ((hour, fold), (hour, 0), *((h, 0) for h in range(hour - 1, -1, -1)),
                *((h, 0) for h in range(hour + 1, 24))):
        if key in hours:
            return hours[key]
    raise OptimiseError("a history day without hours")  # pragma: no cover - by construction


# -- the problem ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """One target year: ``consumption[i, h]`` and ``generation[h]`` kWh, ``shares[i]`` the
    members' annual shares (Σ = 1), ``month[h]`` the billing month 0…11 of each hour.

    ``baseline[i, h]``, when given, is the coefficient file in force laid on the same hours: the
    optimiser then guarantees that no member ends up worse off than under it (see
    :func:`optimise`)."""

    members: tuple[str, ...]
    consumption: np.ndarray
    generation: np.ndarray
    shares: np.ndarray
    month: np.ndarray
    baseline: np.ndarray | None = None

    def __post_init__(self) -> None:
        n, hours = self.consumption.shape
        if n != len(self.members) or self.shares.shape != (n,) or self.generation.shape != (
                hours,) or self.month.shape != (hours,):
            raise OptimiseError("consumption, generation, shares and months disagree in shape")
        if np.any(self.consumption < 0):
            raise OptimiseError("negative consumption")
        if abs(float(self.shares.sum()) - 1.0) > 1e-6:
            raise OptimiseError(f"annual shares sum to {self.shares.sum():.6f}, not 1")
        if self.baseline is not None and self.baseline.shape != (n, hours):
            raise OptimiseError("the baseline coefficients disagree in shape")


@dataclass(frozen=True)
class Options:
    mode: str = "hourly"
    objective: str = "self-consumption"
    keep_annual_shares: bool = True
    min_share: float = 0.0
    price_energy: float = 0.15  # €/kWh bought from the grid (energy term)
    price_surplus: float = 0.05  # €/kWh of surplus under simplified compensation

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise OptimiseError(f"mode must be one of {', '.join(MODES)}")
        if self.objective not in OBJECTIVES:
            raise OptimiseError(f"objective must be one of {', '.join(OBJECTIVES)}")
        if not 0.0 <= self.min_share <= 1.0:
            raise OptimiseError("min share must be within 0…1")
        if self.price_energy < 0 or self.price_surplus < 0:
            raise OptimiseError("prices must not be negative")


@dataclass(frozen=True)
class Outcome:
    """Settlement of a coefficient set on a problem (DESIGN.md §1), per member, kWh."""

    assigned_kwh: np.ndarray
    self_consumed_kwh: np.ndarray
    surplus_kwh: np.ndarray
    import_kwh: np.ndarray

    @property
    def total_self_consumed_kwh(self) -> float:
        return math.fsum(self.self_consumed_kwh)


@dataclass(frozen=True)
class Solution:
    """``betas[i, h]`` unrounded coefficients (Σ_i = 1 every hour), how they were found."""

    betas: np.ndarray
    outcome: Outcome
    method: str  # closed-form | highs-lp | current-shares | marginal-equalisation
    solve_s: float
    variables: int = 0
    constraints: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)


def evaluate(betas: np.ndarray, problem: Problem) -> Outcome:
    """The settlement formulas on arrays: a second, vectorised implementation of
    :func:`streams.energy.balance.split` (tests compare both)."""
    assigned = betas * np.maximum(problem.generation, 0.0)[None, :]
    self_consumed = np.minimum(assigned, problem.consumption)
    return Outcome(assigned.sum(axis=1), self_consumed.sum(axis=1),
                   (assigned - self_consumed).sum(axis=1),
                   (problem.consumption - self_consumed).sum(axis=1))


def savings_eur(betas: np.ndarray, problem: Problem, price_energy: float,
                price_surplus: float) -> np.ndarray:
    """€ saved per member over the year: ``p_e·Σ SC + Σ_month min(p_s·S, p_e·I)`` (simplified
    compensation per billing month, as :mod:`streams.energy.monthly` computes it)."""
    assigned = betas * np.maximum(problem.generation, 0.0)[None, :]
    sc = np.minimum(assigned, problem.consumption)
    one_hot = _month_matrix(problem.month)
    surplus_m = (assigned - sc) @ one_hot
    import_m = (problem.consumption - sc) @ one_hot
    comp = np.minimum(price_surplus * surplus_m, price_energy * import_m).sum(axis=1)
    return price_energy * sc.sum(axis=1) + comp


def optimise(problem: Problem, options: Options) -> Solution:
    """Best coefficients for ``problem`` under ``options`` (see the module docstring).

    With annual shares kept and a baseline (the file in force), the hourly optimum is chosen so
    that every member keeps at least the self-consumption (objective ``self-consumption``) or the
    € savings (``savings``) the baseline gives it: the baseline is a feasible point of the same
    programme, so this never makes the problem infeasible, and for self-consumption it costs the
    community nothing (an augmenting path of a max-flow never lowers the flow through a member).
    """
    n = len(problem.members)
    if options.min_share * n > 1.0 + 1e-12:
        raise OptimiseError(f"min share {options.min_share} × {n} members exceeds 1")
    if options.keep_annual_shares and np.any(problem.shares < options.min_share - 1e-12):
        raise OptimiseError("min share above a member's annual share: with annual shares kept "
                            "that member cannot reach its floor every hour")
    if options.objective == "savings" and options.price_surplus > options.price_energy:
        raise OptimiseError("the surplus price exceeds the energy price: simplified "
                            "compensation never pays more for surplus than for energy")
    started = time.perf_counter()
    if options.mode == "static":
        betas, method, size, notes = _static(problem, options)
    elif options.objective == "self-consumption" and not options.keep_annual_shares:
        betas, method, size, notes = _hourly_greedy(problem, options)
    elif options.objective == "self-consumption":
        betas, method, size, notes = _hourly_flow(problem, options)
    else:
        betas, method, size, notes = _hourly_savings(problem, options)
    elapsed = time.perf_counter() - started
    return Solution(betas, evaluate(betas, problem), method, elapsed, size[0], size[1],
                    tuple(notes))


# -- hourly: the floor, then the rest --------------------------------------------------------------
@dataclass(frozen=True)
class _Reduced:
    """The problem after each member's floor has been assigned, on the sunny hours only."""

    sunny: np.ndarray  # indices of hours with G > 0
    supply: np.ndarray  # G'(h) on sunny hours
    demand: np.ndarray  # C'(i, h) on sunny hours
    floor: np.ndarray  # f(i, h) = floor·G(h) on sunny hours (same for every member)
    target: np.ndarray  # T'(i): annual energy still to assign


def _reduce(problem: Problem, options: Options) -> _Reduced:
    n = len(problem.members)
    sunny = np.flatnonzero(problem.generation > 0)
    g = problem.generation[sunny]
    floor = np.broadcast_to(options.min_share * g, (n, len(sunny)))
    demand = np.maximum(problem.consumption[:, sunny] - floor, 0.0)
    supply = g * (1.0 - n * options.min_share)
    target = problem.shares * g.sum() - floor.sum(axis=1)
    return _Reduced(sunny, np.maximum(supply, 0.0), demand, floor, np.maximum(target, 0.0))


def _betas_from(problem: Problem, red: _Reduced, extra: np.ndarray,
                min_share: float) -> np.ndarray:
    """β = (floor + extra) / G on sunny hours. Where the plant gives nothing any β assigns
    0 kWh: those hours get the annual shares (above the floor), which keeps the file readable."""
    n, hours = problem.consumption.shape
    night = min_share + (1.0 - n * min_share) * problem.shares
    betas = np.repeat(night[:, None], hours, axis=1)
    g = problem.generation[red.sunny]
    sunny = (red.floor + extra) / g[None, :]
    total = sunny.sum(axis=0, keepdims=True)
    fallback = np.repeat(night[:, None], g.size, axis=1)
    betas[:, red.sunny] = np.where(total > 0, sunny / np.where(total > 0, total, 1.0), fallback)
    return betas


Result = tuple[np.ndarray, str, tuple[int, int], list[str]]


def _hourly_greedy(problem: Problem, options: Options) -> Result:
    """Each hour alone: cover every remaining demand; when short, ration proportionally (any
    split of a short hour self-consumes all of it); the surplus follows the annual shares."""
    red = _reduce(problem, options)
    need = red.demand.sum(axis=0)
    short = need >= red.supply
    ratio = np.where(short, red.supply / np.where(need > 0, need, 1.0), 1.0)
    s = red.demand * ratio[None, :]
    leftover = red.supply - s.sum(axis=0)
    extra = s + problem.shares[:, None] * np.maximum(leftover, 0.0)[None, :]
    return _betas_from(problem, red, extra, options.min_share), "closed-form", (0, 0), []


def _fill_surplus(row_left: np.ndarray, col_left: np.ndarray) -> np.ndarray:
    """Transportation fill ``e(i,h) = r(h)·d(i)/Σd``: rows and columns both add up exactly when
    Σr = Σd (closed form, no solver)."""
    total = col_left.sum()
    if total <= 0:
        return np.zeros((col_left.size, row_left.size))
    return col_left[:, None] * row_left[None, :] / total


def _baseline_split(problem: Problem, options: Options,
                    red: _Reduced) -> tuple[np.ndarray | None, list[str]]:
    """The baseline's self-consumption above the floor, ``s(i,h)`` on sunny hours — a feasible
    point of the reduced problem — or None when there is no baseline or it breaks the floor."""
    if problem.baseline is None or not options.keep_annual_shares:
        return None, []
    base = problem.baseline[:, red.sunny]
    if np.any(base < options.min_share - 1e-9):
        return None, ["the current file has coefficients below --min-share: no member-by-member "
                      "guarantee against it"]
    g = problem.generation[red.sunny]
    c = problem.consumption[:, red.sunny]
    s = np.minimum(base * g[None, :], c) - np.minimum(red.floor, c)
    return np.maximum(s, 0.0), []


def _lower_bound(value: np.ndarray) -> np.ndarray:
    """A guarantee a hair below the baseline, so solver tolerances cannot make it infeasible."""
    return value * (1.0 - 1e-7) - 1e-9


def _hourly_flow(problem: Problem, options: Options) -> Result:
    """Self-consumption with annual shares kept, as the bipartite max-flow LP of the module
    docstring; only member-hours with remaining demand become variables. With a baseline, each
    member's total is also bounded below by what the baseline self-consumes."""
    red = _reduce(problem, options)
    n, k = red.demand.shape
    base, notes = _baseline_split(problem, options, red)
    member, hour = np.nonzero(red.demand > 0)
    m = member.size
    rows = k + n
    if m == 0:
        s = np.zeros((n, k))
    else:
        cols = np.arange(m)
        blocks = [sp.coo_matrix((np.ones(m), (hour, cols)), shape=(k, m)),
                  sp.coo_matrix((np.ones(m), (member, cols)), shape=(n, m))]
        b_ub = [red.supply, red.target]
        if base is not None:
            blocks.append(sp.coo_matrix((-np.ones(m), (member, cols)), shape=(n, m)))
            b_ub.append(-_lower_bound(base.sum(axis=1)))
            rows += n
        bounds = np.column_stack([np.zeros(m), red.demand[member, hour]])
        result = linprog(-np.ones(m), A_ub=sp.csr_matrix(sp.vstack(blocks)),
                         b_ub=np.concatenate(b_ub), bounds=bounds, method="highs-ipm")
        _check(result)
        s = np.zeros((n, k))
        s[member, hour] = np.clip(result.x, 0.0, red.demand[member, hour])
    row_left = np.maximum(red.supply - s.sum(axis=0), 0.0)
    col_left = np.maximum(red.target - s.sum(axis=1), 0.0)
    fill, fill_notes = _surplus_by_month(problem, options, red, s, row_left, col_left)
    extra = s + fill
    return (_betas_from(problem, red, extra, options.min_share), "highs-lp", (m, rows),
            notes + fill_notes)


def _surplus_by_month(problem: Problem, options: Options, red: _Reduced, s: np.ndarray,
                      row_left: np.ndarray, col_left: np.ndarray) -> tuple[np.ndarray,
                                                                           list[str]]:
    """Where each member's surplus goes, once self-consumption is at its maximum.

    Any split of the leftover energy with the right hour and member totals keeps the
    self-consumption exactly at the optimum (each member-hour self-consumes at least ``s``, and
    no more in total), so the split is free; it decides the € of simplified compensation,
    which is capped per member and billing month. A small LP (two variables per member-month)
    picks the monthly surplus ``E(i,m)`` that compensates most — if possible with no member's €
    below the baseline's — and each month's part is spread over the month's hours in proportion
    to what is left in them (rows and columns then add up exactly).
    """
    n, k = s.shape
    month = problem.month[red.sunny]
    one_hot = _month_matrix(month)
    left_month = row_left @ one_hot
    total = left_month.sum()
    if total <= 0 or col_left.sum() <= 0:
        return np.zeros((n, k)), []
    col = col_left * (total / col_left.sum())  # the same energy, to the last bit
    pe, ps = options.price_energy, options.price_surplus
    c_sunny = problem.consumption[:, red.sunny]
    floor_sc = np.minimum(red.floor, c_sunny)
    self_consumed = floor_sc + s
    surplus0 = np.maximum(red.floor - c_sunny, 0.0) @ one_hot
    imports = _month_sums(problem.consumption, problem.month) - self_consumed @ one_hot
    cells = 12 * n
    e_cols, c_cols = np.arange(cells), cells + np.arange(cells)
    cell_member, cell_month = np.repeat(np.arange(n), 12), np.tile(np.arange(12), n)
    a_ub = sp.coo_matrix((np.concatenate([-ps * np.ones(cells), np.ones(cells)]),
                          (np.tile(np.arange(cells), 2), np.concatenate([e_cols, c_cols]))),
                         shape=(cells, 2 * cells))
    b_ub = ps * surplus0.ravel()
    a_eq = sp.csr_matrix(sp.vstack([
        sp.coo_matrix((np.ones(cells), (cell_month, e_cols)), shape=(12, 2 * cells)),
        sp.coo_matrix((np.ones(cells), (cell_member, e_cols)), shape=(n, 2 * cells))]))
    b_eq = np.concatenate([left_month, col])
    bounds = np.column_stack([np.zeros(2 * cells),
                              np.concatenate([np.where(left_month[cell_month] > 0, np.inf, 0.0),
                                              pe * np.maximum(imports, 0.0).ravel()])])
    cost = np.concatenate([np.zeros(cells), -np.ones(cells)])
    notes: list[str] = []
    result = None
    if problem.baseline is not None and options.keep_annual_shares:
        wanted = (savings_eur(problem.baseline, problem, pe, ps)
                  - pe * self_consumed.sum(axis=1))
        guard = sp.coo_matrix((-np.ones(cells), (cell_member, c_cols)), shape=(n, 2 * cells))
        result = linprog(cost, A_ub=sp.csr_matrix(sp.vstack([a_ub, guard])),
                         b_ub=np.concatenate([b_ub, -_lower_bound(wanted)]), A_eq=a_eq,
                         b_eq=b_eq, bounds=bounds, method="highs")
        if result.status != 0:
            notes.append("some member's € savings fall below the current file's at the "
                         "self-consumption optimum (use --objective savings to guard them)")
            result = None
    if result is None:
        result = linprog(cost, A_ub=sp.csr_matrix(a_ub), b_ub=b_ub, A_eq=a_eq, b_eq=b_eq,
                         bounds=bounds, method="highs")
    if result.status != 0:  # cannot happen (any split is feasible); stay correct anyway
        return _fill_surplus(row_left, col_left), notes
    monthly = np.maximum(result.x[e_cols].reshape(n, 12), 0.0)
    fill = np.zeros((n, k))
    for mth in np.flatnonzero(left_month > 0):
        here = month == mth
        fill[:, here] = monthly[:, mth][:, None] * (row_left[here] / left_month[mth])[None, :]
    return fill, notes


def _month_matrix(month: np.ndarray) -> np.ndarray:
    """One-hot (hours, 12): ``values @ M`` sums every row per billing month."""
    out = np.zeros((month.size, 12))
    out[np.arange(month.size), month] = 1.0
    return out


def _month_sums(values: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Σ over each billing month: (n, hours) → (n, 12)."""
    return np.asarray(values @ _month_matrix(month))


def _hourly_savings(problem: Problem, options: Options) -> Result:
    """Maximise € saved: ``p_e·Σ SC + Σ_member-month min(p_s·S, p_e·I)`` (DESIGN.md §1).

    The surplus only matters through its member-month total (compensation is capped per billing
    month), so it is one variable ``E(i,m)`` per member-month, spread over the month's hours
    afterwards by a proportional fill. Variables: s(i,h) ≤ C' (member-hours with demand),
    E(i,m) ≥ 0, comp(i,m) ≥ 0. Rows: Σ_i s ≤ G'(h); Σ_i E(i,m) = Σ_{h∈m} (G' − Σ_i s);
    Σ_h s + Σ_m E = T'(i) when annual shares are kept; comp ≤ p_s·(E + floor surplus);
    comp ≤ p_e·(Σ_{h∈m} C' − Σ_{h∈m} s) over the whole month (night hours included); with a
    baseline, each member's € above the floor's ≥ the baseline's.
    """
    red = _reduce(problem, options)
    pe, ps = options.price_energy, options.price_surplus
    n, k = red.demand.shape
    month = problem.month[red.sunny]
    member, hour = np.nonzero(red.demand > 0)
    m = member.size
    mm = member * 12 + month[hour]
    width = m + 24 * n
    s_cols, e_cols, c_cols = np.arange(m), m + np.arange(12 * n), m + 12 * n + np.arange(12 * n)
    e_member, e_month = np.repeat(np.arange(n), 12), np.tile(np.arange(12), n)
    ub = [sp.coo_matrix((np.ones(m), (hour, s_cols)), shape=(k, width)),
          sp.coo_matrix((np.concatenate([np.ones(12 * n), -ps * np.ones(12 * n)]),
                         (np.tile(np.arange(12 * n), 2), np.concatenate([c_cols, e_cols]))),
                        shape=(12 * n, width)),
          sp.coo_matrix((np.concatenate([np.ones(12 * n), pe * np.ones(m)]),
                         (np.concatenate([np.arange(12 * n), mm]),
                          np.concatenate([c_cols, s_cols]))), shape=(12 * n, width))]
    floor_surplus = np.maximum(red.floor - problem.consumption[:, red.sunny], 0.0)
    remaining = problem.consumption.copy()
    remaining[:, red.sunny] = red.demand
    b_ub = [red.supply, ps * _month_sums(floor_surplus, month).ravel(),
            pe * _month_sums(remaining, problem.month).ravel()]
    base, notes = _baseline_split(problem, options, red)
    if base is not None and problem.baseline is not None:
        floor_sc = pe * np.minimum(red.floor, problem.consumption[:, red.sunny]).sum(axis=1)
        wanted = savings_eur(problem.baseline, problem, pe, ps) - floor_sc
        ub.append(sp.coo_matrix((np.concatenate([-pe * np.ones(m), -np.ones(12 * n)]),
                                 (np.concatenate([member, e_member]),
                                  np.concatenate([s_cols, c_cols]))), shape=(n, width)))
        b_ub.append(-_lower_bound(wanted))
    supply_month = np.zeros(12)
    np.add.at(supply_month, month, red.supply)
    eq = [sp.coo_matrix((np.concatenate([np.ones(12 * n), np.ones(m)]),
                         (np.concatenate([e_month, month[hour]]),
                          np.concatenate([e_cols, s_cols]))), shape=(12, width))]
    b_eq = [supply_month]
    if options.keep_annual_shares:
        eq.append(sp.coo_matrix((np.ones(m + 12 * n),
                                 (np.concatenate([member, e_member]),
                                  np.concatenate([s_cols, e_cols]))), shape=(n, width)))
        b_eq.append(red.target)
    bounds = np.column_stack([np.zeros(width),
                              np.concatenate([red.demand[member, hour],
                                              np.full(24 * n, np.inf)])])
    c = np.concatenate([-pe * np.ones(m), np.zeros(12 * n), -np.ones(12 * n)])
    a_ub, a_eq = sp.csr_matrix(sp.vstack(ub)), sp.csr_matrix(sp.vstack(eq))
    result = linprog(c, A_ub=a_ub, b_ub=np.concatenate(b_ub), A_eq=a_eq,
                     b_eq=np.concatenate(b_eq), bounds=bounds, method="highs-ipm")
    _check(result)
    x = np.maximum(result.x, 0.0)
    s = np.zeros((n, k))
    s[member, hour] = np.minimum(x[s_cols], red.demand[member, hour])
    surplus_month = x[e_cols].reshape(n, 12)
    left = np.maximum(red.supply - s.sum(axis=0), 0.0)
    extra = s.copy()
    for mth in range(12):
        here = month == mth
        extra[:, here] += _fill_surplus(left[here], surplus_month[:, mth])
    return (_betas_from(problem, red, extra, options.min_share), "highs-lp",
            (width, a_ub.shape[0] + a_eq.shape[0]), notes)


# -- static --------------------------------------------------------------------------------------
def _static(problem: Problem, options: Options) -> Result:
    """One β per member. Each member's value ``v(β)`` (self-consumption Σ min(β·G, C), or €
    ``Σ_m min(p_s·β·G_m + (p_e − p_s)·SC_m(β), p_e·C_m)``) is concave and piecewise linear in
    its own β, so ``max Σ v_i(β_i), Σ β = 1, β ≥ floor`` is solved exactly by equalising
    marginal values: bisection on the common marginal μ, each β_i(μ) by bisection on the
    (non-increasing) derivative. No LP: n·hours constraints would make HiGHS take minutes.
    With annual shares kept, β *is* the annual share."""
    n, hours = problem.consumption.shape
    if options.keep_annual_shares:
        betas = np.repeat(problem.shares[:, None], hours, axis=1)
        return betas, "current-shares", (0, 0), [
            "static mode with annual shares kept: the best static file is the current one "
            "(pass --no-keep-annual-shares to move energy between members)"]
    sunny = np.flatnonzero(problem.generation > 0)
    g, c = problem.generation[sunny], problem.consumption[:, sunny]
    one_hot = _month_matrix(problem.month[sunny])
    c_month = _month_sums(problem.consumption, problem.month)
    g_month = g @ one_hot
    pe, ps = options.price_energy, options.price_surplus
    savings = options.objective == "savings"

    def slope(beta: np.ndarray) -> np.ndarray:
        """Right derivative of every member's value at ``beta`` (vectorised over members)."""
        assigned = beta[:, None] * g[None, :]
        open_g = (assigned < c) * g[None, :]  # hours where more β still self-consumes
        if not savings:
            return np.asarray(open_g.sum(axis=1))
        d_sc = open_g @ one_hot
        sc = np.minimum(assigned, c) @ one_hot
        below = ps * beta[:, None] * g_month[None, :] + (pe - ps) * sc < pe * c_month - 1e-12
        return np.asarray((below * (ps * g_month[None, :] + (pe - ps) * d_sc)).sum(axis=1))

    lo_b, hi_b = np.full(n, options.min_share), np.ones(n)

    def beta_at(mu: float) -> np.ndarray:
        """Largest β (per member) whose marginal value is still ≥ μ."""
        lo, hi = lo_b.copy(), hi_b.copy()
        ok_hi = slope(hi - 1e-12) >= mu
        for _ in range(40):
            mid = (lo + hi) / 2
            good = slope(mid) >= mu
            lo, hi = np.where(good, mid, lo), np.where(good, hi, mid)
        return np.where(ok_hi, hi_b, lo)

    top = float(slope(lo_b).max()) + 1.0
    mu_lo, mu_hi = 0.0, top
    for _ in range(50):
        mu = (mu_lo + mu_hi) / 2
        if beta_at(mu).sum() > 1.0:
            mu_lo = mu
        else:
            mu_hi = mu
    b_more, b_less = beta_at(mu_lo), beta_at(mu_hi)  # Σ ≥ 1 and Σ ≤ 1
    gap = b_more.sum() - b_less.sum()
    t = 0.0 if gap <= 0 else (1.0 - b_less.sum()) / gap
    above = np.maximum(b_less + t * (b_more - b_less) - options.min_share, 0.0)
    room = 1.0 - n * options.min_share
    beta = options.min_share + (room * above / above.sum() if above.sum() > 0
                                else room * problem.shares)
    return np.repeat(beta[:, None], hours, axis=1), "marginal-equalisation", (n, 1), []


def _check(result: object) -> None:
    status = getattr(result, "status", 1)
    if status != 0:
        raise OptimiseError(f"HiGHS did not find an optimum: {getattr(result, 'message', '?')}")


# -- the file's 6 decimals -----------------------------------------------------------------------
def round_betas(betas: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Integer millionths per member-hour that add up to exactly 1 000 000 every hour.

    Round to nearest, then hand the hour's missing (or excess) millionths to the members whose
    rounding lost (or gained) the most — the largest-remainder method, so no β moves by more than
    one millionth from nearest rounding and the annual shares keep within ~1e-6 of the optimum.
    A member at the floor never goes below it.
    """
    scaled = betas * UNITS
    units = np.rint(scaled).astype(np.int64)
    floor_units = math.ceil(floor * UNITS - 1e-6)
    residual = scaled - units
    diff = UNITS - units.sum(axis=0)
    for h in np.flatnonzero(diff):
        d = int(diff[h])
        if d > 0:
            order = np.argsort(-residual[:, h], kind="stable")
            units[order[:d], h] += 1
        else:
            lowest = [i for i in np.argsort(residual[:, h], kind="stable")
                      if units[i, h] > floor_units]
            units[np.asarray(lowest[:-d], dtype=np.int64), h] -= 1
    return units


def month_of_hours(starts_ms: Sequence[int], tz: str = "Europe/Madrid") -> np.ndarray:
    """Billing month 0…11 (local calendar month of the hour's start)."""
    zone = ZoneInfo(tz)
    return np.array([datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).month - 1
                     for ms in starts_ms], dtype=np.int64)

