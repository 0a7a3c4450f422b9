"""The official coefficient file: parse errors, sums, leap years, and ``ioe coefficients``."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from ioe.cli import main
from ioe.coefficients import CoefficientError, parse_file, parse_text, write_file

A, B, C = "ES0021000000000001RK", "ES0021000000000002RE", "ES0021000000000003WT"
CAU = "ES0021000000000009WYA000"


def hourly_text(year_hours: int, betas: dict[str, str], changes=None) -> str:  # noqa: ANN001
    """Hourly file text: every CUPS every hour, β from ``betas`` unless ``changes[(cups, h)]``."""
    changes = changes or {}
    return "".join(f"{cups};{h:04d};{changes.get((cups, h), beta)}\n"
                   for cups, beta in betas.items() for h in range(1, year_hours + 1))


STATIC = f"{A};0,500000\n{B};0,300000\n{C};0,200000\n"
BASE = {A: "0,500000", B: "0,300000", C: "0,200000"}


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# -- parsing ------------------------------------------------------------------------------------
def test_static_file(tmp_path: Path) -> None:
    schedule = parse_file(write(tmp_path, f"{CAU}_2025.txt", STATIC))
    assert schedule.kind == "static"
    assert dict(schedule.by_cups) == {A: 0.5, B: 0.3, C: 0.2}
    assert schedule.effective_from == date(2025, 1, 1)


def test_hourly_file_common_and_leap_years(tmp_path: Path) -> None:
    common = parse_file(write(tmp_path, f"{CAU}_2025.txt", hourly_text(8760, BASE)))
    assert common.kind == "hourly" and common.year == 2025 and len(common.by_cups[A]) == 8760
    leap = parse_file(write(tmp_path, f"{CAU}_2024.txt", hourly_text(8784, BASE)))
    assert len(leap.by_cups[A]) == 8784 and leap.by_cups[C][8783] == 0.2


def test_leap_year_file_with_8760_hours_is_incomplete(tmp_path: Path) -> None:
    path = write(tmp_path, f"{CAU}_2024.txt", hourly_text(8760, BASE))
    with pytest.raises(CoefficientError, match="hour 8761 .24 hours missing"):
        parse_file(path)


def test_common_year_file_with_8784_hours_is_refused_at_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, f"{CAU}_2025.txt", hourly_text(8784, BASE))
    with pytest.raises(CoefficientError, match=f"{CAU}_2025.txt:8761: hour 8761 outside"):
        parse_file(path)


def test_bom_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, f"{CAU}_2025.txt", b"\xef\xbb\xbf" + STATIC.encode())
    with pytest.raises(CoefficientError, match=r"_2025\.txt:1: .*BOM"):
        parse_file(path)


@pytest.mark.parametrize("beta", ["0,50000", "0,5000000", "0.500000", "0,5", "1_0,000000",
                                  "-0,500000", "1,500000", "0,50000x", ""])
def test_bad_decimals_name_the_line(beta: str) -> None:
    text = f"{A};0,300000\n{B};{beta}\n{C};0,200000\n"
    with pytest.raises(CoefficientError, match=r"^f\.txt:2: "):
        parse_text(text, source="f.txt")


def test_wrong_check_letters_name_the_line() -> None:
    text = f"{A};0,500000\n{B};0,300000\nES0021000000000003WA;0,200000\n"
    with pytest.raises(CoefficientError, match=r"^f\.txt:3: invalid CUPS 'ES0021000000000003WA'"):
        parse_text(text, source="f.txt")


def test_static_sums_must_be_exactly_one() -> None:
    # three thirds rounded to 6 decimals: 0,999999 is not 1, nor is 1,000001
    for third in ("0,333333", "0,333334"):
        text = f"{A};{third}\n{B};0,333333\n{C};0,333333\n"
        if third == "0,333334":
            text = f"{A};0,333334\n{B};0,333334\n{C};0,333333\n"
        with pytest.raises(CoefficientError, match=r"^f\.txt:3: coefficients sum to"):
            parse_text(text, source="f.txt")
    ok = parse_text(f"{A};0,333334\n{B};0,333333\n{C};0,333333\n", source="f.txt")
    assert sum(ok.by_cups.values()) == pytest.approx(1.0)


def test_hourly_sum_wrong_in_one_hour_names_the_hour_and_lines(tmp_path: Path) -> None:
    text = hourly_text(8760, BASE, {(B, 5): "0,300001"})
    path = write(tmp_path, f"{CAU}_2025.txt", text)
    # hour 0005 is on lines 5 (A), 8765 (B) and 17525 (C): the sum is complete at 17525
    with pytest.raises(CoefficientError,
                       match=r"_2025\.txt:17525: coefficients of hour 0005 sum to 1\.000001, "
                             r"not 1 \(lines 5, 8765, 17525\)"):
        parse_file(path)


def test_mixed_duplicate_and_empty() -> None:
    with pytest.raises(CoefficientError, match=r"f:2: mixes static and hourly"):
        parse_text(f"{A};0,500000\n{B};0001;0,500000\n", source="f")
    with pytest.raises(CoefficientError, match=r"f:2: CUPS .* appears twice"):
        parse_text(f"{A};0,500000\n{A};0,500000\n", source="f")
    with pytest.raises(CoefficientError, match="no coefficients"):
        parse_text("\n\n", source="f")
    with pytest.raises(CoefficientError, match="needs its year"):
        parse_text(f"{A};0001;1,000000\n", source="f")


# -- ioe coefficients -----------------------------------------------------------------------------
def test_validate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, f"{CAU}_2025.txt", STATIC)
    assert main(["coefficients", "validate", str(good)]) == 0
    assert "OK, static, 3 CUPS" in capsys.readouterr().out
    hourly = write(tmp_path, "hourly.txt", hourly_text(8784, BASE))
    assert main(["coefficients", "validate", str(hourly), "--year", "2024"]) == 0
    out = capsys.readouterr()
    assert "OK, hourly 2024, 3 CUPS × 8784 hours" in out.out
    assert "<CAU>_<YYYY>.txt" in out.err  # the name is not the distributor's


@pytest.mark.parametrize(("text", "message"), [
    (f"{A};0,500000\n{B};0,300000\n{C};0,200001\n", ":3: coefficients sum to 1.000001"),
    (f"{A};0,50000\n", ":1: coefficient '0,50000' must have"),
    (f"{A};0,500000\nES0021000000000002RR;0,500000\n", ":2: invalid CUPS"),
])
def test_validate_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 text: str, message: str) -> None:
    path = write(tmp_path, f"{CAU}_2025.txt", text)
    assert main(["coefficients", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}{message}" in err


def test_validate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["coefficients", "validate", str(tmp_path / "nope_2025.txt")]) == 2
    assert "nope_2025.txt" in capsys.readouterr().err


def test_convert_static_to_hourly_and_back(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    static = write(tmp_path, f"{CAU}_2024.txt", STATIC)
    hourly = tmp_path / "hourly" / f"{CAU}_2024.txt"
    hourly.parent.mkdir()
    assert main(["coefficients", "convert", "--to", "hourly", str(static),
                 "--out", str(hourly)]) == 0
    lines = hourly.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 * 8784  # the year comes from the file name: leap
    assert lines[0] == f"{A};0001;0,500000"
    assert lines[-1] == f"{C};8784;0,200000"
    back = tmp_path / "back.txt"
    assert main(["coefficients", "convert", "--to", "static", str(hourly),
                 "--out", str(back)]) == 0
    assert back.read_bytes() == static.read_bytes()
    assert not back.read_bytes().startswith(b"\xef\xbb\xbf")
    capsys.readouterr()


def test_convert_hourly_round_trip_is_byte_identical(tmp_path: Path) -> None:
    text = hourly_text(8760, BASE)
    source = write(tmp_path, f"{CAU}_2025.txt", text)
    static = tmp_path / "static.txt"
    again = tmp_path / "again.txt"
    assert main(["coefficients", "convert", "--to", "static", str(source),
                 "--out", str(static)]) == 0
    assert main(["coefficients", "convert", "--to", "hourly", str(static), "--year", "2025",
                 "--out", str(again)]) == 0
    assert again.read_text(encoding="utf-8") == text
    # and write_file of a parsed file reproduces it
    rewritten = tmp_path / "rewritten.txt"
    write_file(parse_file(source), rewritten)
    assert rewritten.read_text(encoding="utf-8") == text


def test_convert_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    varying = write(tmp_path, f"{CAU}_2025.txt",
                    hourly_text(8760, BASE, {(A, 9): "0,400000", (C, 9): "0,300000"}))
    assert main(["coefficients", "convert", "--to", "static", str(varying),
                 "--out", str(tmp_path / "x.txt")]) == 2
    assert "different hourly coefficients" in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()
    unnamed = write(tmp_path, "static.txt", STATIC)
    assert main(["coefficients", "convert", "--to", "hourly", str(unnamed),
                 "--out", str(tmp_path / "y.txt")]) == 2
    assert "needs --year" in capsys.readouterr().err
