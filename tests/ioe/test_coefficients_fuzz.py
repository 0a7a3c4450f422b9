"""The official coefficient file parser, fuzzed (issue 16, item 14): any text is a schedule whose
β are all in 0…1 and sum to 1 in every hour, or a :class:`CoefficientError` naming the file —
never another exception (every caller — the registry, ``ioe settle``, ``ioe coefficients`` —
catches only :class:`CoefficientError`, so anything else is a traceback for the operator).

Real-world starting point: the project's example file
``infra/examples/coefficients/ES0021084908453624LJ1FA001_2026.txt`` (30 members, static, the
format of Orden TED/1247/2021 Anexo I: ``CUPS;0,xxxxxx``, decimal comma, 6 decimals), and its
hourly form ``CUPS;HHHH;0,xxxxxx`` as distributors receive it. Bounded by default; ``pytest -m
long`` parses ≥ 1,000,000 mutated lines.
"""

from __future__ import annotations

import math
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ioe.coefficients import (
    SUM_TOLERANCE,
    CoefficientError,
    CoefficientSchedule,
    hours_in_year,
    parse_text,
)
from ioe.settings import ROOT

EXAMPLE = ROOT / "infra/examples/coefficients/ES0021084908453624LJ1FA001_2026.txt"
LINES = EXAMPLE.read_text(encoding="utf-8").splitlines()
CUPS = [line.split(";")[0] for line in LINES]
#: cells that real files and hand edits in a spreadsheet produce, and a few hostile ones
CELLS = [*CUPS[:3], CUPS[0].lower(), CUPS[0] + "1F", CUPS[0][:-1] + "X", "", " ", "0,500000",
         "1,000000", "0,000000", "0.500000", "0,5", "1,000001", "-0,100000", "0,5000001",
         "nan", "0001", "8760", "8784", "8785", "0000", "1", "12345", "٠٠٠١", "0001 ",
         "\ufeff" + CUPS[0], "\x00", ";", "ES"]
JUNK = ["", ";", ",", ".", "\x00", "\r", "\t", " ", "\ufeff", "٣", "9", "0", "-", "e", "é",
        "0,000001"]


def check(text: str, **options: object) -> str:
    """The invariant; returns the outcome's name (``static``, ``hourly`` or ``refused``)."""
    try:
        schedule = parse_text(text, source="fuzz.txt", **options)  # type: ignore[arg-type]
    except CoefficientError as exc:
        assert str(exc).startswith("fuzz.txt"), exc  # names the file (and the line)
        return "refused"
    assert isinstance(schedule, CoefficientSchedule)
    values: list[float] = []
    for beta in schedule.by_cups.values():
        values.extend([beta] if isinstance(beta, float) else beta)  # type: ignore[list-item]
    assert values and all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values)
    if schedule.kind == "hourly":
        assert schedule.year is not None
        assert {len(v) for v in schedule.by_cups.values()} == {  # type: ignore[arg-type]
            hours_in_year(schedule.year)}
    if options.get("check_sums", True):
        assert all(abs(total - 1.0) <= SUM_TOLERANCE for total in schedule.hour_sums())
    return schedule.kind


def test_the_real_file_parses():
    """The fuzz's starting point is a good file (so the fuzz can fail): 30 members, Σβ = 1."""
    assert check("\n".join(LINES)) == "static"
    assert check("\n".join(LINES[:-1])) == "refused"  # one member less: Σβ ≠ 1


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.lists(st.sampled_from(CELLS) | st.text(max_size=6), min_size=1, max_size=4)
                .map(";".join), max_size=8),
       st.sampled_from([None, 2024, 2026]), st.booleans(), st.sampled_from(["\n", "\r\n", "\r"]))
def test_fuzz_lines(lines, year, sums, newline):
    check(newline.join(lines), year=year, check_sums=sums)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, len(LINES) - 1), st.integers(0, 40),
                          st.sampled_from(JUNK)), min_size=1, max_size=4), st.booleans())
def test_fuzz_the_real_file(edits, sums):
    """The example file with a few characters inserted/replaced: parsed or refused."""
    lines = list(LINES)
    for index, position, junk in edits:
        line = lines[index]
        lines[index] = line[:position] + junk + line[position + 1:]
    check("\n".join(lines), check_sums=sums)


@settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.integers(1, 8760), st.sampled_from(JUNK + ["0,250000", "0001", "8760"]),
       st.integers(0, 30))
def test_fuzz_an_hourly_file(hour, junk, position):
    """A whole hourly year (2 members × 8760 h) with one line edited."""
    betas = {CUPS[0]: "0,750000", CUPS[1]: "0,250000"}
    lines = [f"{cups};{h:04d};{beta}" for cups, beta in betas.items() for h in range(1, 8761)]
    line = lines[hour - 1]
    lines[hour - 1] = line[:position] + junk + line[position + 1:]
    assert check("\n".join(lines), year=2026) in ("hourly", "refused")


@pytest.mark.parametrize("hour", ["000²", "٠٠٠١", "０００１"])
def test_an_hour_in_other_digits_is_a_coefficient_error(hour):
    """Found by the fuzz: ``str.isdigit()`` accepts a superscript two or Arabic-Indic digits,
    then ``int()`` raised a bare ValueError (``000²``) or read another script as hour 1."""
    with pytest.raises(CoefficientError, match="fuzz.txt:1: hour"):
        parse_text(f"{CUPS[0]};{hour};1,000000\n", source="fuzz.txt", year=2026)


# -- the long run -----------------------------------------------------------------------------
@pytest.mark.long
def test_long_fuzz_a_million_lines():
    """≥ 1M lines: the example file (30 lines) mutated 1–3 times per file."""
    count = int(os.environ.get("IOE_FUZZ_INPUTS", "1000000"))
    rng = random.Random(20261204)
    outcomes: dict[str, int] = {}
    done = 0
    while done < count:
        lines = list(LINES)
        for _ in range(rng.randint(1, 3)):
            index = rng.randrange(len(lines))
            line, position = lines[index], rng.randint(0, len(lines[index]))
            choice = rng.random()
            if choice < 0.6:
                lines[index] = line[:position] + rng.choice(JUNK) + line[position + 1:]
            elif choice < 0.7:
                del lines[index]
            elif choice < 0.8:
                lines.insert(index, rng.choice(lines))
            else:
                lines[index] = ";".join(rng.choice(CELLS) for _ in range(rng.randint(1, 4)))
            if not lines:
                break
        outcome = check("\n".join(lines), year=rng.choice([None, 2026]),
                        check_sums=rng.random() < 0.8)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        done += len(lines)
    print(f"coefficient fuzz: {done} lines, 0 crashes, {outcomes}")
