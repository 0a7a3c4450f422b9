"""``ioe coefficients optimise`` end to end, on hand-built communities whose optimum is known.

Every day of the history (2025, both clock changes) is the same: the plant makes 1 kWh in each
local hour starting 10:00 … 15:00 (6 kWh a day); member A draws 1 kWh in the hours starting
10, 11, 12 ("morning"), member B in 13, 14, 15 ("evening"), nothing otherwise.

By hand, for a target year of D days (6·D kWh generated):

* static 0.5/0.5 (the current file): each member self-consumes 0.5 kWh in each of its 3 hours,
  1.5·D each, 3·D in all; *any* static split self-consumes 3·D (A gets 3β, B 3(1 − β));
* hourly with annual shares kept (0.5·6·D each): the consumer of the hour gets all of it — the
  bound Σ min(G, ΣC) = 6·D, every kWh self-consumed.

The written file is judged by an independent strict reader (fixtures_optimise/datadis_csv.py),
by ``ioe coefficients validate``, and settled by ``ioe settle`` on the history laid on the target
year (``--write-mapped``): the energy figures below come from that settlement, never from the
optimiser.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from datetime import date
from pathlib import Path

import pytest
from fixtures_optimise.datadis_csv import (
    Profile,
    hour_of_year,
    hours_of,
    make_cups,
    read_official,
    read_settled,
    write_series,
    write_static,
    year_hours,
)

from ioe.cli import main

A, B, C = make_cups(1), make_cups(2), make_cups(3)
PLANT = make_cups(9)
CAU = PLANT + "A001"
UNIT = 1_000_000


def plant(day: date, hour: int) -> float:
    return 1.0 if 10 <= hour < 16 else 0.0


def morning(day: date, hour: int) -> float:
    return 1.0 if 10 <= hour < 13 else 0.0


def evening(day: date, hour: int) -> float:
    return 1.0 if 13 <= hour < 16 else 0.0


def nothing(day: date, hour: int) -> float:
    return 0.0


def history(root: Path, year: int, members: dict[str, Profile]) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    starts = hours_of(year)
    consumption = write_series(root / "consumption.csv", "consumption", members, starts)
    generation = write_series(root / "generation.csv", "generation", {PLANT: plant}, starts)
    return consumption, generation


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return history(tmp_path_factory.mktemp("two"), 2025, {A: morning, B: evening})


@pytest.fixture(scope="module")
def balanced(tmp_path_factory: pytest.TempPathFactory,
             two: tuple[Path, Path]) -> tuple[str, Path, Path, Path]:
    """The 0.5/0.5 community optimised for 2026 with the defaults: (printed, file, mapped,
    current file)."""
    tmp = tmp_path_factory.mktemp("balanced")
    current = current_file(tmp, {A: "0,500000", B: "0,500000"})
    code, printed, out, mapped = run_optimise(tmp, two, current, 2026)
    assert code == 0, printed
    return printed, out, mapped, current


def run_optimise(tmp: Path, inputs: tuple[Path, Path], current: Path, year: int,
                 *extra: str) -> tuple[int, str, Path, Path]:
    """The command as a user runs it; returns (exit code, everything printed, file, mapped)."""
    out_dir, mapped = tmp / "out", tmp / "mapped"
    out_dir.mkdir(exist_ok=True)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        code = main(["coefficients", "optimise", "--consumption", str(inputs[0]),
                     "--generation", str(inputs[1]), "--current", str(current), "--year",
                     str(year), "--out", f"{out_dir}/", "--write-mapped", str(mapped), *extra])
    return code, printed.getvalue(), out_dir / f"{CAU}_{year}.txt", mapped


def settle(tmp: Path, coefficients: Path, mapped: Path, year: int,
           name: str) -> dict[str, dict[str, float]]:
    out = tmp / f"settled_{name}.csv"
    code = main(["settle", "--coefficients", str(coefficients), "--consumption",
                 str(mapped / f"consumption_{year}.csv"), "--generation",
                 str(mapped / f"generation_{year}.csv"), "--out", str(out)])
    assert code == 0
    return read_settled(out)


def community_sc(totals: dict[str, dict[str, float]]) -> float:
    return math.fsum(t["self_consumed_kwh"] for t in totals.values())


def current_file(tmp: Path, betas: dict[str, str], year: int = 2026) -> Path:
    return write_static(tmp / f"{CAU}_{year}.txt", betas)


def check_official(path: Path, members: list[str], year: int,
                   floor_units: int = 0) -> dict[str, dict[int, int]]:
    """The official-format rules, from the raw bytes."""
    assert re.fullmatch(r"[A-Z0-9]+_\d{4}\.txt", path.name) and path.name.endswith(f"_{year}.txt")
    table = read_official(path)
    assert list(table) == members
    hours = year_hours(year)
    for cups in members:
        assert sorted(table[cups]) == list(range(1, hours + 1)), cups
    for h in range(1, hours + 1):
        assert sum(table[c][h] for c in members) == UNIT, f"hour {h:04d} does not sum to 1"
        assert min(table[c][h] for c in members) >= floor_units, f"hour {h:04d} below floor"
    return table


def test_complementary_loads_reach_the_hourly_bound(
        tmp_path: Path, balanced: tuple[str, Path, Path, Path]) -> None:
    printed, out, mapped, current = balanced
    check_official(out, [A, B], 2026)
    assert main(["coefficients", "validate", str(out)]) == 0
    days = 365
    optimised = settle(tmp_path, out, mapped, 2026, "optimised")
    static = settle(tmp_path, current, mapped, 2026, "current")
    assert community_sc(optimised) == pytest.approx(6 * days, abs=1e-6)
    assert community_sc(static) == pytest.approx(3 * days, abs=1e-6)
    for cups in (A, B):
        assert optimised[cups]["self_consumed_kwh"] == pytest.approx(3 * days, abs=1e-6)
        assert optimised[cups]["assigned_kwh"] == pytest.approx(3 * days, rel=1e-3)
        assert optimised[cups]["surplus_kwh"] == pytest.approx(0, abs=1e-6)
    # the optimiser's own figure is exactly what the settlement of its file gives
    reported = re.search(r"self-consumption on the mapped history: ([\d.]+) kWh", printed)
    assert reported and float(reported.group(1)) == pytest.approx(community_sc(optimised),
                                                                  abs=5e-4)


def test_static_cannot_beat_three_kwh_a_day(tmp_path: Path, two: tuple[Path, Path]) -> None:
    current = current_file(tmp_path, {A: "0,800000", B: "0,200000"})
    code, printed, out, mapped = run_optimise(tmp_path, two, current, 2026, "--mode", "static",
                                              "--no-keep-annual-shares")
    assert code == 0, printed
    table = check_official(out, [A, B], 2026)
    assert len({table[A][h] for h in table[A]}) == 1  # one β per member, every hour
    static = settle(tmp_path, out, mapped, 2026, "static")
    assert community_sc(static) == pytest.approx(3 * 365, abs=1e-6)
    # hourly, equally free to move energy between members: the bound
    code, printed, out, mapped = run_optimise(tmp_path, two, current, 2026,
                                              "--no-keep-annual-shares")
    assert code == 0, printed
    assert community_sc(settle(tmp_path, out, mapped, 2026, "hourly")) == pytest.approx(
        6 * 365, abs=1e-6)


def test_unequal_shares_beat_the_current_file_by_hand(tmp_path: Path,
                                                      two: tuple[Path, Path]) -> None:
    """Shares 0.7/0.3 of 2190 kWh: A is owed 1533 kWh but can use at most 3 kWh a day (1095),
    B is owed 657 and uses all of it: 1752 kWh, against 0.7·1095 + 0.3·1095 = 1095 now."""
    current = current_file(tmp_path, {A: "0,700000", B: "0,300000"})
    code, printed, out, mapped = run_optimise(tmp_path, two, current, 2026)
    assert code == 0, printed
    check_official(out, [A, B], 2026)
    optimised = settle(tmp_path, out, mapped, 2026, "optimised")
    now = settle(tmp_path, current, mapped, 2026, "current")
    assert community_sc(now) == pytest.approx(1095, abs=1e-6)
    assert community_sc(optimised) == pytest.approx(1752, abs=0.01)
    assert optimised[A]["self_consumed_kwh"] == pytest.approx(1095, abs=0.01)
    assert optimised[B]["self_consumed_kwh"] == pytest.approx(657, abs=0.01)
    for cups, share in ((A, 0.7), (B, 0.3)):
        assert optimised[cups]["assigned_kwh"] == pytest.approx(share * 2190, rel=1e-3)
        assert optimised[cups]["self_consumed_kwh"] >= now[cups]["self_consumed_kwh"] - 1e-3


def test_member_without_consumption_keeps_its_share_as_surplus(tmp_path: Path) -> None:
    inputs = history(tmp_path / "in", 2025, {A: morning, B: evening, C: nothing})
    current = current_file(tmp_path, {A: "0,400000", B: "0,400000", C: "0,200000"})
    code, printed, out, mapped = run_optimise(tmp_path, inputs, current, 2026)
    assert code == 0, printed
    check_official(out, [A, B, C], 2026)
    optimised = settle(tmp_path, out, mapped, 2026, "optimised")
    assert community_sc(settle(tmp_path, current, mapped, 2026, "current")) == pytest.approx(
        876, abs=1e-6)  # 0.4 · 3 kWh · 365 days, twice
    assert community_sc(optimised) == pytest.approx(1752, abs=0.01)  # A and B: 876 each
    assert optimised[C]["self_consumed_kwh"] == 0
    assert optimised[C]["assigned_kwh"] == pytest.approx(438, rel=1e-3)
    assert optimised[C]["surplus_kwh"] == pytest.approx(438, rel=1e-3)


@pytest.mark.parametrize(("history_year", "target"), [(2027, 2028), (2024, 2025)])
def test_leap_years(tmp_path: Path, history_year: int, target: int) -> None:
    inputs = history(tmp_path / "in", history_year, {A: morning, B: evening})
    current = current_file(tmp_path, {A: "0,500000", B: "0,500000"}, target)
    code, printed, out, mapped = run_optimise(tmp_path, inputs, current, target)
    assert code == 0, printed
    table = check_official(out, [A, B], target)
    days = 366 if target == 2028 else 365
    assert len(table[A]) == 24 * days
    assert main(["coefficients", "validate", str(out)]) == 0
    optimised = settle(tmp_path, out, mapped, target, "optimised")
    assert community_sc(optimised) == pytest.approx(6 * days, abs=1e-6)
    if target == 2028:  # 29 February exists and is modelled like any other day
        for hour in (10, 11, 12):
            assert table[A][hour_of_year(date(2028, 2, 29), hour)] == UNIT
        assert table[B][hour_of_year(date(2028, 2, 29), 13)] == UNIT
        assert table[A][8784] == UNIT // 2  # 31 December 23:00, a night hour


def test_clock_change_days_count_elapsed_hours(balanced: tuple[str, Path, Path, Path]) -> None:
    """Hours of the year are elapsed hours: the morning hours of every day, the 23-hour and
    25-hour days included, sit exactly where zoneinfo says."""
    _, out, mapped, _ = balanced
    table = read_official(out)
    for day in (date(2026, 1, 1), date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30),
                date(2026, 6, 15), date(2026, 10, 25), date(2026, 10, 26), date(2026, 12, 31)):
        for hour in (10, 11, 12):
            assert table[A][hour_of_year(day, hour)] == UNIT, (day, hour)
            assert table[B][hour_of_year(day, hour)] == 0, (day, hour)
        for hour in (13, 14, 15):
            assert table[B][hour_of_year(day, hour)] == UNIT, (day, hour)
    # 29 March has 23 hours, 25 October 25 (02:00 twice: two distinct night hours)
    assert hour_of_year(date(2026, 3, 30), 0) - hour_of_year(date(2026, 3, 29), 0) == 23
    october = hour_of_year(date(2026, 10, 25), 2, fold=0), hour_of_year(date(2026, 10, 25), 2,
                                                                        fold=1)
    assert october[1] == october[0] + 1
    assert all(table[A][h] == UNIT // 2 for h in october)
    rows = (mapped / "consumption_2026.csv").read_text(encoding="utf-8").splitlines()
    october_rows = [r.split(";")[2] for r in rows if r.startswith(A) and ";2026/10/25;" in r]
    assert len(october_rows) == 25 and october_rows.count("03:00") == 2
    march_rows = [r.split(";")[2] for r in rows if r.startswith(A) and ";2026/03/29;" in r]
    assert len(march_rows) == 23 and "03:00" not in march_rows


def test_min_share_is_a_floor_every_hour(tmp_path: Path, two: tuple[Path, Path]) -> None:
    """Floor 0.1: the member who is away keeps 0.1 kWh of each sunny hour as surplus, so
    0.9 · 6 kWh a day are self-consumed."""
    current = current_file(tmp_path, {A: "0,500000", B: "0,500000"})
    code, printed, out, mapped = run_optimise(tmp_path, two, current, 2026, "--min-share",
                                              "0.1")
    assert code == 0, printed
    check_official(out, [A, B], 2026, floor_units=100_000)
    optimised = settle(tmp_path, out, mapped, 2026, "floor")
    assert community_sc(optimised) == pytest.approx(0.9 * 6 * 365, abs=1e-6)
    for cups in (A, B):
        assert optimised[cups]["assigned_kwh"] == pytest.approx(1095, rel=1e-3)
    # shares free: a member whose share is below the floor still gets it, at night too
    lopsided = current_file(tmp_path, {A: "0,950000", B: "0,050000"})
    code, printed, out, mapped = run_optimise(tmp_path, two, lopsided, 2026, "--min-share",
                                              "0.1", "--no-keep-annual-shares")
    assert code == 0, printed
    check_official(out, [A, B], 2026, floor_units=100_000)
    assert community_sc(settle(tmp_path, out, mapped, 2026, "free")) == pytest.approx(
        0.9 * 6 * 365, abs=1e-6)
    code, printed, _, _ = run_optimise(tmp_path, two, current, 2026, "--min-share", "0.6")
    assert code == 2 and "min share" in printed
    code, printed, _, _ = run_optimise(tmp_path, two, lopsided, 2026, "--min-share", "0.1")
    assert code == 2 and "annual share" in printed  # 0.05 < 0.1 with shares kept


def test_savings_objective_and_report(tmp_path: Path, two: tuple[Path, Path]) -> None:
    """€ by hand (0.15 €/kWh energy, 0.05 €/kWh surplus): now each member self-consumes 1.5 kWh
    a day and spills 1.5 kWh while importing 1.5 kWh, so every month its compensation is the
    whole surplus value: (0.15 + 0.05)·3 kWh·365 = 219 €; optimised, 0.15·6·365 = 328.5 €."""
    current = current_file(tmp_path, {A: "0,500000", B: "0,500000"})
    code, printed, out, _ = run_optimise(tmp_path, two, current, 2026, "--objective",
                                         "savings", "--price-energy", "0.15", "--price-surplus",
                                         "0.05", "--report")
    assert code == 0, printed
    check_official(out, [A, B], 2026)
    report = Path(f"{out}.report.csv").read_text(encoding="utf-8").splitlines()
    header = report[0].split(";")
    rows = {(r["scenario"], r["cups"]): r for r in
            (dict(zip(header, line.split(";"), strict=True)) for line in report[1:])}
    assert float(rows["current", "community"]["savings_eur"]) == pytest.approx(219.0, abs=1e-6)
    assert float(rows["optimised", "community"]["savings_eur"]) == pytest.approx(328.5,
                                                                                 abs=1e-3)
    assert float(rows["optimised", "community"]["grid_import_kwh"]) == pytest.approx(0,
                                                                                    abs=1e-3)
    assert "gain: +1095.0 kWh self-consumed" in printed
    assert "+109.50 € saved" in printed
    assert "estimate" in printed  # the honest caveat


def test_bad_requests_exit_2(tmp_path: Path, two: tuple[Path, Path]) -> None:
    current = current_file(tmp_path, {A: "1,000000"})  # B is not in the file
    bad = tmp_path / "bad_2026.txt"
    bad.write_text(f"{A};0,500000\n{B};0,400000\n", encoding="utf-8")
    for path in (current, bad):
        code, printed, _, _ = run_optimise(tmp_path, two, path, 2026)
        assert code == 2 and "ioe coefficients" in printed


def test_no_member_pays_for_the_gain(tmp_path: Path) -> None:
    """A and B both draw 1 kWh in the morning hours only, C nothing; shares 0.4/0.4/0.2.
    The morning's 3 kWh can be self-consumed in many ways (A anything from 0.6 to 2.4 kWh a
    day, B the rest): the optimum, 3 kWh a day, must leave each of A and B at least the
    1.2 kWh a day the current file gives them (0.4 · 3)."""
    inputs = history(tmp_path / "in", 2025, {A: morning, B: morning, C: nothing})
    current = current_file(tmp_path, {A: "0,400000", B: "0,400000", C: "0,200000"})
    code, printed, out, mapped = run_optimise(tmp_path, inputs, current, 2026)
    assert code == 0, printed
    optimised = settle(tmp_path, out, mapped, 2026, "optimised")
    assert community_sc(optimised) == pytest.approx(3 * 365, abs=0.01)
    for cups in (A, B):
        assert optimised[cups]["self_consumed_kwh"] >= 1.2 * 365 - 0.01
        assert optimised[cups]["assigned_kwh"] == pytest.approx(0.4 * 6 * 365, rel=1e-3)


def test_hourly_current_file_of_the_history_year(tmp_path: Path, two: tuple[Path, Path]) -> None:
    """The community already files hourly coefficients for 2025, and they are perfect (A gets
    the morning, B the evening, 0.5/0.5 at night): the report settles that file on the very
    hours that model 2026 — 6 kWh a day self-consumed now — so the gain is zero, and the annual
    shares read from it are 0.5/0.5."""
    lines = []
    for cups, mine in ((A, range(10, 13)), (B, range(13, 16))):
        betas = {h: "0,500000" for h in range(1, 8761)}
        for day in (date.fromordinal(date(2025, 1, 1).toordinal() + k) for k in range(365)):
            for hour in range(10, 16):
                betas[hour_of_year(day, hour)] = "1,000000" if hour in mine else "0,000000"
        lines += [f"{cups};{h:04d};{b}\n" for h, b in betas.items()]
    current = tmp_path / f"{CAU}_2025.txt"
    current.write_text("".join(lines), encoding="utf-8")
    assert main(["coefficients", "validate", str(current)]) == 0
    code, printed, out, mapped = run_optimise(tmp_path, two, current, 2026, "--report")
    assert code == 0, printed
    report = Path(f"{out}.report.csv").read_text(encoding="utf-8").splitlines()
    header = report[0].split(";")
    rows = {(r["scenario"], r["cups"]): r for r in
            (dict(zip(header, line.split(";"), strict=True)) for line in report[1:])}
    for scenario in ("current", "optimised"):
        assert float(rows[scenario, "community"]["self_consumed_kwh"]) == pytest.approx(
            6 * 365, abs=1e-3)
        for cups in (A, B):
            assert float(rows[scenario, cups]["assigned_kwh"]) == pytest.approx(3 * 365,
                                                                                rel=1e-3)
    assert "gain: +0.0 kWh" in printed
