"""Coefficient optimisation (``ioe coefficients optimise``): solve time for a year × N members.

A synthetic community (seeded): a PV plant of 1 kWp per member with random cloudy days, and
households with morning and evening peaks, lunch at home on free days and random appliance
runs — 8760 hours of 2026 for 30 and 150 members (30 only with ``--quick``). For each size:

* ``hourly LP, self-consumption`` — the default (annual shares kept, no member worse off);
* ``hourly LP, savings`` — € with simplified compensation per member-month;
* ``hourly, shares free`` — the closed form;
* ``static, shares free`` — marginal equalisation;

each against the baseline measured in the same run on the same arrays: the static-share
evaluation (the settlement formulas of the file in force, vectorised), i.e. what checking the
current file costs. The last figure per size is the gain: self-consumption % of generation,
optimised vs static shares.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from ioe.holidays import holidays
from streams.energy.optimise import (
    Options,
    Problem,
    evaluate,
    month_of_hours,
    optimise,
    target_hour_starts,
)

YEAR = 2026
TZ = "Europe/Madrid"


def synthetic(members: int, seed: int = 244) -> Problem:
    rng = np.random.default_rng(seed)
    zone = ZoneInfo(TZ)
    starts = target_hour_starts(YEAR, TZ)
    local = [datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone) for ms in starts]
    hour = np.array([t.hour for t in local], dtype=float)
    day = np.array([t.timetuple().tm_yday for t in local])
    free = np.array([t.weekday() >= 5 or t.date() in holidays(YEAR) for t in local])
    # plant: a solar bell that widens in summer, times a cloud factor per day
    noon = 13.5 + 0.5 * np.cos(2 * np.pi * (day - 172) / 365)  # solar noon on the wall clock
    width = 4.2 + 1.3 * np.cos(2 * np.pi * (day - 172) / 365)
    clouds = rng.uniform(0.25, 1.0, size=366)[day]
    sun = np.clip(np.cos((hour + 0.5 - noon) / width * np.pi / 2), 0, None) ** 1.3
    generation = 0.8 * members * sun * clouds
    # households: base + morning + evening peaks (+ lunch on free days) + appliance runs
    base = rng.uniform(0.08, 0.2, size=(members, 1))
    morning_at = rng.uniform(6.5, 9.0, size=(members, 1)) + 1.5 * free[None, :]
    evening_at = rng.uniform(19.5, 22.0, size=(members, 1))
    away = rng.random((members, 1)) < 0.6  # most members work out of home on weekdays
    home = np.where(away, free[None, :], True)

    def bump(at: np.ndarray, size: float, spread: float) -> np.ndarray:
        return np.asarray(size * np.exp(-0.5 * ((hour[None, :] + 0.5 - at) / spread) ** 2))

    consumption = (base + bump(morning_at, 0.5, 0.9) + bump(evening_at, 0.9, 1.5)
                   + home * bump(np.full((members, 1), 14.5), 0.6, 1.2)
                   + (rng.random((members, hour.size)) < 0.04) * rng.uniform(0.5, 2.0, (
                       members, hour.size)))
    weights = rng.choice([1.0, 1.0, 2.0, 3.0], size=members)
    shares = weights / weights.sum()
    return Problem(tuple(f"m{i:03d}" for i in range(members)), consumption, generation, shares,
                   month_of_hours(starts, TZ), np.repeat(shares[:, None], hour.size, axis=1))


def _timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def measure(members: int) -> list[dict[str, Any]]:
    problem = synthetic(members)
    static_betas = problem.baseline
    assert static_betas is not None
    static, base_s = _timed(lambda: evaluate(static_betas, problem))
    base_s = min(base_s, _timed(lambda: evaluate(static_betas, problem))[1])
    label = f"{members} members × {problem.generation.size} h"
    figures = []
    hourly = None
    for name, options in (
            ("hourly LP, self-consumption", Options()),
            ("hourly LP, savings (€)", Options(objective="savings")),
            ("hourly, shares free (closed form)", Options(keep_annual_shares=False)),
            ("static, shares free", Options(mode="static", keep_annual_shares=False))):
        solution, wall_s = _timed(lambda options=options: optimise(problem, options))
        if hourly is None:
            hourly = solution
        figures.append({"name": f"{label}: {name}", "value": wall_s, "baseline": base_s,
                        "unit": "s", "baseline_name": "static-share evaluation",
                        "variables": solution.variables, "constraints": solution.constraints})
    g = float(np.maximum(problem.generation, 0).sum())
    assert hourly is not None
    figures.append({"name": f"{label}: self-consumption, optimised vs static shares",
                    "value": hourly.outcome.total_self_consumed_kwh / g * 100,
                    "baseline": static.total_self_consumed_kwh / g * 100, "unit": "%"})
    return figures


def run(quick: bool = False) -> dict[str, Any]:
    figures = []
    for members in ((30,) if quick else (30, 150)):
        figures += measure(members)
    return {"scenario": "coefficient optimisation", "figures": figures}


if __name__ == "__main__":
    for figure in run()["figures"]:
        print(f"{figure['name']:<72} {figure['value']:>10.3f} {figure['unit']:<2} "
              f"(baseline {figure['baseline']:.4g} {figure['unit']})")
