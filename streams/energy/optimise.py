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
  member-sunny-hour with demand, only n + hours rows); the surplus is then spread so every hour
  and every member add up exactly (a proportional transportation fill, closed form);
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
from ioe.simulator.load import holidays

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


def target_hour_starts(year: int, tz: str = "Europe/Madrid") -> list[int]:
    """UTC start of hours 0001…8760/8784 of ``year`` (elapsed hours from 1 January 00:00)."""
    start = year_start_ms(year, tz)
    return [start + k * HOUR_MS for k in range(hours_in_year(year))]


def pick_history_day(target: date, by_type: dict[int, list[date]]) -> date:
    """The history day of the same type nearest in the season (ties: the more recent day).

    Falls back to any day of the same weekday class (weekday vs free day) and then to any day,
    so a short history still maps; the choice is reported through :class:`YearMapping`.
    """
    kind = day_type(target)
    pools = (by_type.get(kind, []),
             [d for t, days in by_type.items() if (t >= 5) == (kind >= 5) for d in days],
             [d for days in by_type.values() for d in days])
    for pool in pools:
        if pool:
            return min(pool, key=lambda d: (_season_distance(d, target), -d.toordinal()))
    raise OptimiseError("the history has no complete day to model the target year with")


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
    by_type: dict[int, list[date]] = {}
    for day in sorted(by_day):
        by_type.setdefault(day_type(day), []).append(day)
    targets = target_hour_starts(year, tz)
    chosen: dict[date, date] = {}
    index = np.empty(len(targets), dtype=np.int64)
    for k, (day, hour, fold) in enumerate(_wall_hours(targets, tz)):
        if day not in chosen:
            chosen[day] = pick_history_day(day, by_type)
        hours = by_day[chosen[day]]
        index[k] = _hour_in_day(hours, hour, fold)
    return YearMapping(year, tz, index, tuple(sorted(chosen.items())))


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
    members' annual shares (Σ = 1), ``month[h]`` the billing month 0…11 of each hour."""

    members: tuple[str, ...]
    consumption: np.ndarray
    generation: np.ndarray
    shares: np.ndarray
    month: np.ndarray

    def __post_init__(self) -> None:
        n, hours = self.consumption.shape
        if n != len(self.members) or self.shares.shape != (n,) or self.generation.shape != (
                hours,) or self.month.shape != (hours,):
            raise OptimiseError("consumption, generation, shares and months disagree in shape")
        if np.any(self.consumption < 0):
            raise OptimiseError("negative consumption")
        if abs(float(self.shares.sum()) - 1.0) > 1e-6:
            raise OptimiseError(f"annual shares sum to {self.shares.sum():.6f}, not 1")


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
    method: str  # closed-form | highs-lp | current-shares
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


def optimise(problem: Problem, options: Options) -> Solution:
    """Best coefficients for ``problem`` under ``options`` (see the module docstring)."""
    n = len(problem.members)
    if options.min_share * n > 1.0 + 1e-12:
        raise OptimiseError(f"min share {options.min_share} × {n} members exceeds 1")
    if options.keep_annual_shares and np.any(problem.shares < options.min_share - 1e-12):
        raise OptimiseError("min share above a member's annual share: with annual shares kept "
                            "that member cannot reach its floor every hour")
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


def _betas_from(problem: Problem, red: _Reduced, extra: np.ndarray) -> np.ndarray:
    """β = (floor + extra) / G on sunny hours; the annual shares where the plant gives nothing
    (any β assigns 0 kWh there, and the shares keep the file readable)."""
    betas = np.repeat(problem.shares[:, None], problem.generation.size, axis=1)
    g = problem.generation[red.sunny]
    sunny = (red.floor + extra) / g[None, :]
    betas[:, red.sunny] = sunny / sunny.sum(axis=0, keepdims=True)
    return betas


def _hourly_greedy(problem: Problem, options: Options) -> tuple[np.ndarray, str, tuple[int, int],
                                                                 list[str]]:
    """Each hour alone: cover every remaining demand; when short, ration proportionally (any
    split of a short hour self-consumes all of it); the surplus follows the annual shares."""
    red = _reduce(problem, options)
    need = red.demand.sum(axis=0)
    short = need >= red.supply
    ratio = np.where(short, red.supply / np.where(need > 0, need, 1.0), 1.0)
    s = red.demand * ratio[None, :]
    leftover = red.supply - s.sum(axis=0)
    extra = s + problem.shares[:, None] * np.maximum(leftover, 0.0)[None, :]
    return _betas_from(problem, red, extra), "closed-form", (0, 0), []


def _fill_surplus(row_left: np.ndarray, col_left: np.ndarray) -> np.ndarray:
    """Transportation fill ``e(i,h) = r(h)·d(i)/Σd``: rows and columns both add up exactly when
    Σr = Σd (closed form, no solver)."""
    total = col_left.sum()
    if total <= 0:
        return np.zeros((col_left.size, row_left.size))
    return col_left[:, None] * row_left[None, :] / total


def _hourly_flow(problem: Problem, options: Options) -> tuple[np.ndarray, str, tuple[int, int],
                                                               list[str]]:
    """Self-consumption with annual shares kept, as the bipartite max-flow LP of the module
    docstring; only member-hours with remaining demand become variables."""
    red = _reduce(problem, options)
    n, k = red.demand.shape
    member, hour = np.nonzero(red.demand > 0)
    m = member.size
    if m == 0:
        s = np.zeros((n, k))
    else:
        cols = np.arange(m)
        a_ub = sp.csr_matrix(sp.vstack([
            sp.coo_matrix((np.ones(m), (hour, cols)), shape=(k, m)),
            sp.coo_matrix((np.ones(m), (member, cols)), shape=(n, m))]))
        b_ub = np.concatenate([red.supply, red.target])
        bounds = np.column_stack([np.zeros(m), red.demand[member, hour]])
        result = linprog(-np.ones(m), A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
        _check(result)
        s = np.zeros((n, k))
        s[member, hour] = np.clip(result.x, 0.0, red.demand[member, hour])
    row_left = np.maximum(red.supply - s.sum(axis=0), 0.0)
    col_left = np.maximum(red.target - s.sum(axis=1), 0.0)
    extra = s + _fill_surplus(row_left, col_left)
    return _betas_from(problem, red, extra), "highs-lp", (m, k + n), []


def _hourly_savings(problem: Problem, options: Options) -> tuple[np.ndarray, str,
                                                                 tuple[int, int], list[str]]:
    """Maximise € saved: ``p_e·Σ SC + Σ_member-month min(p_s·S, p_e·I)`` (DESIGN.md §1).

    Variables: s(i,h) ≤ C', e(i,h) ≥ 0 (surplus beyond the floor's), comp(i,m) ≥ 0.
    Rows: Σ_i s+e = G'(h); Σ_h s+e = T'(i) when annual shares are kept;
    comp ≤ p_s·(Σ e + floor surplus); comp ≤ p_e·(Σ C' over the whole month − Σ s).
    """
    red = _reduce(problem, options)
    pe, ps = options.price_energy, options.price_surplus
    n, k = red.demand.shape
    nk = n * k
    # variable layout: s (nk) | e (nk) | comp (12n)
    member = np.repeat(np.arange(n), k)
    hour = np.tile(np.arange(k), n)
    s_cols, e_cols, c_cols = np.arange(nk), nk + np.arange(nk), 2 * nk + np.arange(12 * n)
    rows_h = np.concatenate([hour, hour])
    eq_blocks = [sp.coo_matrix((np.ones(2 * nk), (rows_h, np.concatenate([s_cols, e_cols]))),
                               shape=(k, 2 * nk + 12 * n))]
    b_eq = [red.supply]
    if options.keep_annual_shares:
        eq_blocks.append(sp.coo_matrix((np.ones(2 * nk), (np.concatenate([member, member]),
                                                          np.concatenate([s_cols, e_cols]))),
                                       shape=(n, 2 * nk + 12 * n)))
        b_eq.append(red.target)
    month_of_var = problem.month[red.sunny][hour]
    mm = member * 12 + month_of_var
    # comp − p_s Σ e ≤ p_s·floor surplus
    cap_s = sp.coo_matrix((np.concatenate([np.ones(12 * n), -ps * np.ones(nk)]),
                           (np.concatenate([np.arange(12 * n), mm]),
                            np.concatenate([c_cols, e_cols]))), shape=(12 * n, 2 * nk + 12 * n))
    floor_surplus = np.maximum(red.floor - problem.consumption[:, red.sunny], 0.0)
    fs = np.zeros(12 * n)
    np.add.at(fs, mm, floor_surplus.ravel())
    # comp + p_e Σ s ≤ p_e Σ C' (C' = C − min(f, C); f = 0 in hours without generation)
    remaining = problem.consumption.copy()
    remaining[:, red.sunny] = red.demand
    month_need = np.zeros((n, 12))
    for mth in range(12):
        month_need[:, mth] = remaining[:, problem.month == mth].sum(axis=1)
    cap_i = sp.coo_matrix((np.concatenate([np.ones(12 * n), pe * np.ones(nk)]),
                           (np.concatenate([np.arange(12 * n), mm]),
                            np.concatenate([c_cols, s_cols]))), shape=(12 * n, 2 * nk + 12 * n))
    a_ub = sp.csr_matrix(sp.vstack([cap_s, cap_i]))
    b_ub = np.concatenate([ps * fs, pe * month_need.ravel()])
    a_eq = sp.csr_matrix(sp.vstack(eq_blocks))
    bounds = np.column_stack([np.zeros(2 * nk + 12 * n),
                              np.concatenate([red.demand.ravel(), np.full(nk, np.inf),
                                              np.full(12 * n, np.inf)])])
    c = np.concatenate([-pe * np.ones(nk), np.zeros(nk), -np.ones(12 * n)])
    result = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.concatenate(b_eq),
                     bounds=bounds, method="highs")
    _check(result)
    x = np.maximum(result.x, 0.0)
    extra = (x[s_cols] + x[e_cols]).reshape(n, k)
    return (_betas_from(problem, red, extra), "highs-lp",
            (c.size, a_ub.shape[0] + a_eq.shape[0]), [])


# -- static --------------------------------------------------------------------------------------
def _static(problem: Problem, options: Options) -> tuple[np.ndarray, str, tuple[int, int],
                                                         list[str]]:
    """One β per member: ``max Σ s (+ compensation)`` with ``s(i,h) ≤ β(i)·G(h)``, ``s ≤ C``,
    ``Σβ = 1``, ``β ≥ floor``. With annual shares kept, β *is* the annual share."""
    n, hours = problem.consumption.shape
    if options.keep_annual_shares:
        betas = np.repeat(problem.shares[:, None], hours, axis=1)
        return betas, "current-shares", (0, 0), [
            "static mode with annual shares kept: the best static file is the current one "
            "(pass --no-keep-annual-shares to move energy between members)"]
    pe, ps = options.price_energy, options.price_surplus
    savings = options.objective == "savings"
    sunny = np.flatnonzero(problem.generation > 0)
    g = problem.generation[sunny]
    demand = problem.consumption[:, sunny]
    member, hour = np.nonzero(demand > 0)
    m = member.size
    comps = 12 * n if savings else 0
    width = n + m + comps
    s_cols = n + np.arange(m)
    rows = [sp.coo_matrix((np.concatenate([np.ones(m), -g[hour]]),
                           (np.concatenate([np.arange(m), np.arange(m)]),
                            np.concatenate([s_cols, member]))), shape=(m, width))]
    b_ub = [np.zeros(m)]
    c = np.concatenate([np.zeros(n), -(pe if savings else 1.0) * np.ones(m), -np.ones(comps)])
    if savings:
        c_cols = n + m + np.arange(12 * n)
        mm = member * 12 + problem.month[sunny][hour]
        g_month = np.zeros(12)
        np.add.at(g_month, problem.month[sunny], g)
        # comp − p_s (β·G_month − Σ s) ≤ 0
        beta_rows = np.arange(12 * n)
        rows.append(sp.coo_matrix((np.concatenate([np.ones(12 * n), -ps * np.tile(g_month, n),
                                                   ps * np.ones(m)]),
                                   (np.concatenate([beta_rows, beta_rows, mm]),
                                    np.concatenate([c_cols, np.repeat(np.arange(n), 12),
                                                    s_cols]))), shape=(12 * n, width)))
        b_ub.append(np.zeros(12 * n))
        month_need = np.zeros((n, 12))
        for mth in range(12):
            month_need[:, mth] = problem.consumption[:, problem.month == mth].sum(axis=1)
        rows.append(sp.coo_matrix((np.concatenate([np.ones(12 * n), pe * np.ones(m)]),
                                   (np.concatenate([beta_rows, mm]),
                                    np.concatenate([c_cols, s_cols]))), shape=(12 * n, width)))
        b_ub.append(pe * month_need.ravel())
    a_ub = sp.csr_matrix(sp.vstack(rows))
    a_eq = sp.csr_matrix((np.ones(n), (np.zeros(n, dtype=int), np.arange(n))), shape=(1, width))
    bounds = np.column_stack([
        np.concatenate([np.full(n, options.min_share), np.zeros(m + comps)]),
        np.concatenate([np.ones(n), demand[member, hour], np.full(comps, np.inf)])])
    result = linprog(c, A_ub=a_ub, b_ub=np.concatenate(b_ub), A_eq=a_eq, b_eq=[1.0],
                     bounds=bounds, method="highs")
    _check(result)
    beta = np.clip(result.x[:n], 0.0, 1.0)
    beta = beta / beta.sum()
    return (np.repeat(beta[:, None], hours, axis=1), "highs-lp", (width, a_ub.shape[0] + 1),
            [])


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
            order = [i for i in np.argsort(residual[:, h], kind="stable")
                     if units[i, h] > floor_units]
            units[np.asarray(order[:-d], dtype=np.int64), h] -= 1
    return units


def month_of_hours(starts_ms: Sequence[int], tz: str = "Europe/Madrid") -> np.ndarray:
    """Billing month 0…11 (local calendar month of the hour's start)."""
    zone = ZoneInfo(tz)
    return np.array([datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).month - 1
                     for ms in starts_ms], dtype=np.int64)

