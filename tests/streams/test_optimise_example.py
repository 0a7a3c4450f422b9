"""The example community (30 households, 30 kWp) over a simulated 2025, optimised for 2026.

Long (the simulated year takes ~30 s to write and the report settles 2 × 262 800 member-hours):
``pytest -m long tests/streams/test_optimise_example.py``. The figures come from the report CSV
(``ioe settle``'s code on the mapped history) and ``ioe coefficients validate``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fixtures_optimise.datadis_csv import read_official
from fixtures_optimise.make_example_year import ROOT, write_year

from ioe.cli import main

CURRENT = ROOT / "infra" / "examples" / "coefficients" / "ES0021084908453624LJ1FA001_2026.txt"


@pytest.mark.long
def test_example_community_gains_and_no_member_loses(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    consumption, generation = write_year(tmp_path / "history", 2025)
    out = tmp_path / "out"
    out.mkdir()
    code = main(["coefficients", "optimise", "--consumption", str(consumption), "--generation",
                 str(generation), "--current", str(CURRENT), "--year", "2026", "--out",
                 f"{out}/", "--report"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    written = out / CURRENT.name
    assert main(["coefficients", "validate", str(written)]) == 0
    table = read_official(written)
    assert len(table) == 30 and all(len(hours) == 8760 for hours in table.values())
    solve = re.search(r"highs-lp in ([\d.]+) s", printed)
    assert solve and float(solve.group(1)) < 60  # the bound for 30 members
    lines = Path(f"{written}.report.csv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split(";")
    rows = [dict(zip(header, line.split(";"), strict=True)) for line in lines[1:]]
    now = {r["cups"]: r for r in rows if r["scenario"] == "current"}
    new = {r["cups"]: r for r in rows if r["scenario"] == "optimised"}
    gain = float(new["community"]["self_consumed_kwh"]) / float(
        now["community"]["self_consumed_kwh"]) - 1
    assert gain > 0.10, printed  # hourly coefficients keep >10 % more energy at home
    for cups in table:
        assert float(new[cups]["self_consumed_kwh"]) >= float(now[cups]["self_consumed_kwh"]) - 0.01
        assert float(new[cups]["assigned_kwh"]) == pytest.approx(
            float(now[cups]["assigned_kwh"]), rel=1e-3)
    assert "gain: +" in printed and "estimate" in printed
