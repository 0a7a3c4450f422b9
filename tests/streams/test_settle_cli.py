"""``ioe settle`` on a small community, against numbers worked out by hand.

Fixture (tests/streams/fixtures_settle): members A (β 0.5), B (0.3), C (0.2); 25 and 26 Oct 2025
(the 26th has 25 hours, two ``03:00`` rows). Consumption: A 0.5 kWh every hour except the second
``03:00`` of the 26th (0.7); B 1,2 kWh (decimal comma) every hour; C nothing. Generation: 1, 2,
3, 4, 4, 3, 2, 1 kWh in the hours ending 10:00 … 17:00, −0.010 (inverter standby) in the hours
ending 03:00, 0 otherwise — 20 kWh a day.

By hand, per sunny day: A gets 0.5·20 = 10 kWh assigned, self-consumes 0.5 in each of the 8 sunny
hours (4 kWh), surplus 6; B gets 6 and uses it all (0.3·G ≤ 1.2); C gets 4, all surplus.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ioe.cli import main

FIXTURES = Path(__file__).parent / "fixtures_settle"
COEFFICIENTS = FIXTURES / "ES0021000000000009WYA000_2025.txt"
CONSUMPTION = FIXTURES / "consumption.csv"
GENERATION = FIXTURES / "generation.csv"
A, B, C = "ES0021000000000001RK", "ES0021000000000002RE", "ES0021000000000003WT"
PLANT = "ES0021000000000009WY"
HEADER = ("cups;date;time;hour_end_utc;coefficient;consumption_kwh;assigned_kwh;"
          "self_consumed_kwh;surplus_kwh;grid_import_kwh")
COLUMNS = HEADER.split(";")


def settle(tmp_path: Path, *extra: str, coefficients: Path = COEFFICIENTS,
           consumption: Path = CONSUMPTION, generation: Path = GENERATION) -> tuple[int, Path]:
    out = tmp_path / "settled.csv"
    code = main(["settle", "--coefficients", str(coefficients), "--consumption",
                 str(consumption), "--generation", str(generation), "--out", str(out), *extra])
    return code, out


def read_rows(path: Path) -> list[dict[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == HEADER
    return [dict(zip(COLUMNS, line.split(";"), strict=True)) for line in lines[1:]]


def totals(rows: list[dict[str, str]], cups: str) -> dict[str, float]:
    mine = [r for r in rows if r["cups"] == cups]
    return {c: round(sum(float(r[c]) for r in mine), 6) for c in COLUMNS[5:]}


def test_small_community_static_coefficients(tmp_path: Path) -> None:
    code, out = settle(tmp_path)
    assert code == 0
    rows = read_rows(out)
    assert len(rows) == 3 * (24 + 25)  # one per consumption row
    source = CONSUMPTION.read_text().splitlines()[1:]
    assert [(r["cups"], r["date"], r["time"]) for r in rows] == [
        tuple(line.split(";")[:3]) for line in source]  # input order

    # A: consumption 24·0.5 + 25·0.5 + 0.2 = 24.7; assigned 2·10; SC 2·4; S 2·6; I 24.7 − 8
    assert totals(rows, A) == {"consumption_kwh": 24.7, "assigned_kwh": 20.0,
                               "self_consumed_kwh": 8.0, "surplus_kwh": 12.0,
                               "grid_import_kwh": 16.7}
    # B: 49·1.2 = 58.8; assigned 2·6, all self-consumed; imports 58.8 − 12
    assert totals(rows, B) == {"consumption_kwh": 58.8, "assigned_kwh": 12.0,
                               "self_consumed_kwh": 12.0, "surplus_kwh": 0.0,
                               "grid_import_kwh": 46.8}
    # C: consumes nothing, 2·4 kWh assigned, all surplus
    assert totals(rows, C) == {"consumption_kwh": 0.0, "assigned_kwh": 8.0,
                               "self_consumed_kwh": 0.0, "surplus_kwh": 8.0,
                               "grid_import_kwh": 0.0}


def test_sunny_night_and_october_rows_by_hand(tmp_path: Path) -> None:
    code, out = settle(tmp_path)
    assert code == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    # A, sunny hour 13:00 on the 25th (G = 4): assigned 2, SC 0.5, surplus 1.5
    assert f"{A};2025/10/25;13:00;2025-10-25T11:00:00Z;0.500000;0.500000;2.000000;0.500000;" \
           "1.500000;0.000000" in lines
    # B, the same hour, decimal comma input: assigned 1.2 = consumption
    assert f"{B};2025/10/25;13:00;2025-10-25T11:00:00Z;0.300000;1.200000;1.200000;1.200000;" \
           "0.000000;0.000000" in lines
    # the two 03:00 of the 26th: summer time then winter time; standby generation assigns 0
    a_rows = [line for line in lines if line.startswith(f"{A};2025/10/26;03:00;")]
    assert a_rows == [
        f"{A};2025/10/26;03:00;2025-10-26T01:00:00Z;0.500000;0.500000;0.000000;0.000000;"
        "0.000000;0.500000",
        f"{A};2025/10/26;03:00;2025-10-26T02:00:00Z;0.500000;0.700000;0.000000;0.000000;"
        "0.000000;0.700000",
    ]
    # after the change, the 26th's 13:00 is 12:00Z (CET), the 25th's was 11:00Z (CEST)
    assert any(line.startswith(f"{C};2025/10/26;13:00;2025-10-26T12:00:00Z;0.200000;0.000000;"
                               "0.800000;0.000000;0.800000;0.000000") for line in lines)
    assert any(line.startswith(f"{A};2025/10/26;24:00;2025-10-26T23:00:00Z;") for line in lines)


def hourly_file(path: Path, changes: dict[int, tuple[str, str, str]]) -> Path:
    base = ("0,500000", "0,300000", "0,200000")
    path.write_text("".join(f"{cups};{h:04d};{changes.get(h, base)[i]}\n"
                            for i, cups in enumerate((A, B, C)) for h in range(1, 8761)),
                    encoding="utf-8")
    return path


def test_hourly_coefficients_follow_the_hour_of_the_year(tmp_path: Path) -> None:
    # hour 7155 = the second (CET) 03:00 of 26 Oct; hour 7165 = the hour ending 13:00 that day
    coefficients = hourly_file(tmp_path / "ES0021000000000009WYA000_2025.txt", {
        7155: ("0,100000", "0,100000", "0,800000"),
        7165: ("0,200000", "0,300000", "0,500000"),
    })
    code, out = settle(tmp_path, coefficients=coefficients)
    assert code == 0
    rows = read_rows(out)
    betas = [(r["time"], r["hour_end_utc"], r["coefficient"]) for r in rows
             if r["cups"] == C and r["date"] == "2025/10/26" and r["time"] in ("03:00", "13:00")]
    assert betas == [("03:00", "2025-10-26T01:00:00Z", "0.200000"),
                     ("03:00", "2025-10-26T02:00:00Z", "0.800000"),
                     ("13:00", "2025-10-26T12:00:00Z", "0.500000")]
    # the 25th's 13:00 is hour 7140: unchanged
    assert [r["coefficient"] for r in rows
            if r["cups"] == A and r["date"] == "2025/10/25" and r["time"] == "13:00"] == [
        "0.500000"]
    # at 13:00 on the 26th A gets 0.2·4 = 0.8 (SC 0.5, S 0.3) instead of 2 (S 1.5):
    assert totals(rows, A) == {"consumption_kwh": 24.7, "assigned_kwh": 18.8,
                               "self_consumed_kwh": 8.0, "surplus_kwh": 10.8,
                               "grid_import_kwh": 16.7}
    # … and C 0.5·4 = 2 instead of 0.8
    assert totals(rows, C)["assigned_kwh"] == 9.2
    assert totals(rows, C)["surplus_kwh"] == 9.2
    assert totals(rows, B)["assigned_kwh"] == 12.0


def test_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = settle(tmp_path, "--summary")
    assert code == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.split() == [A, "49", "24.700", "20.000", "8.000", "12.000", "16.700"]
               for line in lines)
    assert any(line.split() == [B, "49", "58.800", "12.000", "12.000", "0.000", "46.800"]
               for line in lines)
    assert any(line.split() == [C, "49", "0.000", "8.000", "0.000", "8.000", "0.000"]
               for line in lines)
    # community: 40 kWh generated, 8 + 12 self-consumed → 50 %
    assert ("community: generation 40.000 kWh, self-consumed 20.000 kWh, "
            "self-consumption ratio 50.00 %") in out


def test_march_day_as_a_subprocess(tmp_path: Path) -> None:
    labels = ["01:00", "02:00"] + [f"{h:02d}:00" for h in range(4, 25)]  # 23 rows
    assert len(labels) == 23
    coefficients = tmp_path / "ES0021000000000009WYA000_2025.txt"
    coefficients.write_text(f"{A};1,000000\n", encoding="utf-8")
    consumption = tmp_path / "c.csv"
    consumption.write_text("cups;date;time;consumption_kwh\n" + "".join(
        f"{A};2025/03/30;{t};1.0\n" for t in labels), encoding="utf-8")
    generation = tmp_path / "g.csv"
    generation.write_text("cups;date;time;generation_kwh\n" + "".join(
        f"{PLANT};2025/03/30;{t};{'1,5' if t == '13:00' else '0'}\n" for t in labels),
        encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "ioe.cli", "settle", "--coefficients", str(coefficients),
         "--consumption", str(consumption), "--generation", str(generation), "--summary"],
        capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == HEADER
    ends = [line.split(";")[3] for line in lines[1:]]
    assert ends[:4] == ["2025-03-30T00:00:00Z", "2025-03-30T01:00:00Z",
                        "2025-03-30T02:00:00Z", "2025-03-30T03:00:00Z"]
    assert ends[-1] == "2025-03-30T22:00:00Z" and len(ends) == 23
    # 13:00 CEST: 1.5 kWh assigned to a member using 1.0 → 0.5 surplus
    assert f"{A};2025/03/30;13:00;2025-03-30T11:00:00Z;1.000000;1.000000;1.500000;1.000000;" \
           "0.500000;0.000000" in lines
    # summary goes to stderr when the CSV is on stdout: 23 kWh used, 1 self-consumed
    assert "self-consumption ratio 66.67 %" in result.stderr
    assert any(line.split()[:3] == [A, "23", "23.000"] for line in result.stderr.splitlines())


# -- errors: exit 2, message naming file and line ---------------------------------------------
def modified(tmp_path: Path, source: Path, edit) -> Path:  # noqa: ANN001
    lines = source.read_text(encoding="utf-8").splitlines()
    path = tmp_path / source.name
    path.write_text("".join(f"{line}\n" for line in edit(lines)), encoding="utf-8")
    return path


def replace_line(number: int, text: str):  # noqa: ANN201
    return lambda lines: [text if i == number else line for i, line in enumerate(lines, 1)]


def delete_line(number: int):  # noqa: ANN201
    return lambda lines: [line for i, line in enumerate(lines, 1) if i != number]


def expect_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], message: str,
                 **files: Path) -> None:
    code, out = settle(tmp_path, **files)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert not out.exists()


def test_unknown_cups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = modified(tmp_path, CONSUMPTION,
                    replace_line(30, "ES0031405512345678EV;2025/10/26;04:00;0.500"))
    expect_error(tmp_path, capsys, f"{path}:30: unknown CUPS ES0031405512345678EV",
                 consumption=path)


def test_hour_missing_from_generation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # generation line 29 is the second 03:00 of the 26th; consumption line 29 is A's
    path = modified(tmp_path, GENERATION, delete_line(29))
    expect_error(tmp_path, capsys, f"{CONSUMPTION}:29: hour 2025/10/26 03:00 "
                 f"(2025-10-26T02:00:00Z) missing from {path}", generation=path)


def test_coefficients_not_summing_to_one(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = modified(tmp_path, COEFFICIENTS, replace_line(3, f"{C};0,100000"))
    expect_error(tmp_path, capsys, f"{path}:3: coefficients sum to 0.900000, not 1",
                 coefficients=path)


@pytest.mark.parametrize(("line", "text", "message"), [
    (10, f"{A};2025/10/25;09:00;abc", ":10: 'abc' is not a number"),
    (10, f"{A};2025/10/25;09:00;1.234,5", ":10: '1.234,5' is not a number"),
    (10, f"{A};2025/10/25;09:00;-0.5", ":10: negative consumption"),
    (10, f"{A};2025/10/25;09:15;0.5", ":10: time '09:15' is not an hour end"),
    (10, f"{A};25/10/2025;09:00;0.5", ":10: date '25/10/2025' is not YYYY/MM/DD"),
    (10, f"{A};2025/10/25;25:00;0.5", ":10: time '25:00' is not an interval end"),
    (10, f"{A};2025/10/25;08:00;0.5", ":10: 2025/10/25 08:00 appears more than 1 time"),
    (10, f"{A};2025/10/25;09:00", ":10: expected 4 fields, got 3"),
    (10, "ES0021000000000001RA;2025/10/25;09:00;0.5", ":10: invalid CUPS"),
    (30, f"{A};2025/10/26;03:00;0.5", ":30: 2025/10/26 03:00 appears more than 2 time(s)"),
    (1, "cups;date;hour;consumption_kwh", ":1: header must be 'cups;date;time;consumption_kwh'"),
])
def test_bad_consumption_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str], line: int,
                              text: str, message: str) -> None:
    path = modified(tmp_path, CONSUMPTION, replace_line(line, text))
    expect_error(tmp_path, capsys, f"{path}{message}", consumption=path)


def test_bad_generation_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = modified(tmp_path, GENERATION, replace_line(5, f"{PLANT};2025/10/25;04:00;x"))
    expect_error(tmp_path, capsys, f"{path}:5: 'x' is not a number", generation=path)
    header = modified(tmp_path, GENERATION, replace_line(1, "cups;date;time;consumption_kwh"))
    expect_error(tmp_path, capsys, f"{header}:1: header must be 'cups;date;time;generation_kwh'",
                 generation=header)


def test_no_coefficient_file_for_that_year(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    coefficients = hourly_file(tmp_path / "ES0021000000000009WYA000_2024.txt", {})
    # an hourly 2025 layout named 2024 is refused as a 2024 file (8784 hours expected)
    expect_error(tmp_path, capsys, "has no line for hour 8761", coefficients=coefficients)
    coefficients = hourly_file(tmp_path / "ES0021000000000009WYA000_2025.txt", {})
    path = modified(tmp_path, CONSUMPTION,
                    lambda lines: [*lines, f"{A};2026/01/01;01:00;0.5"])
    expect_error(tmp_path, capsys, f"{path}:149: no coefficient file covers 2026/01/01 01:00 "
                 "(hour 0001 of 2026)", coefficients=coefficients, consumption=path)


def test_missing_input_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(tmp_path, capsys, "nope.csv: cannot read", consumption=tmp_path / "nope.csv")


def test_bom_and_extra_columns_in_csv_are_accepted(tmp_path: Path) -> None:
    text = CONSUMPTION.read_text(encoding="utf-8").splitlines()
    path = tmp_path / "consumption.csv"
    path.write_text("\ufeff" + f"{text[0]};obtainMethod\n"
                    + "".join(f"{line};Real\n" for line in text[1:]), encoding="utf-8")
    code, out = settle(tmp_path, consumption=path)
    assert code == 0
    assert totals(read_rows(out), A)["consumption_kwh"] == 24.7


def test_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "missing-dir" / "settled.csv"
    code = main(["settle", "--coefficients", str(COEFFICIENTS), "--consumption",
                 str(CONSUMPTION), "--generation", str(GENERATION), "--out", str(out)])
    assert code == 2
    assert "settled.csv: cannot write" in capsys.readouterr().err
