"""The community registry: the shipped example is valid; every rejection names its line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from stdnum.es import cups as stdnum_cups

from ioe.registry import Community, RegistryError, load_registry
from ioe.settings import ROOT

EXAMPLE = ROOT / "infra" / "examples" / "community.yaml"
JUNE_NOON_MS = 1_781_604_000_000  # 2026-06-16T10:00:00Z


def cups(n: int) -> str:
    body = f"0021{n:012d}"
    return f"ES{body}{stdnum_cups.calc_check_digits(body)}"


def test_example_community_is_valid_and_realistic():
    registry = load_registry(EXAMPLE)
    community = registry.community("ce-benimaclet")
    assert community is not None
    assert len(community.members) == 30
    assert community.peak_power_kw == 30
    for member in community.members:
        assert stdnum_cups.is_valid(member.cups)
    # the static coefficients of the example sum to 1 and are read from the official file
    total = sum(community.coefficient(m.id, JUNE_NOON_MS) for m in community.members)
    assert total == pytest.approx(1.0, abs=1e-6)
    # every member's meter and the plant's inverters are known devices
    inverter = registry.device("inv-huawei-1")
    assert inverter is not None and inverter.role == "generation"
    assert registry.device(f"datadis:{community.members[0].cups}").member_id == "m01"


def test_wire_format_round_trip():
    community = load_registry(EXAMPLE).community("ce-benimaclet")
    again = Community.from_json(community.to_json())
    assert again.members == community.members
    assert again.coefficient("m07", JUNE_NOON_MS) == community.coefficient("m07", JUNE_NOON_MS)


def write(tmp_path: Path, body: str, coefficients: str | None = None) -> Path:
    if coefficients is not None:
        (tmp_path / "ES0021000000000009ZZ1FA001_2026.txt").write_text(coefficients)
    path = tmp_path / "registry.yaml"
    path.write_text(textwrap.dedent(body))
    return path


BASE = f"""\
communities:
  - id: c1
    location: {{latitude: 40.0, longitude: -3.0}}
    plants:
      - id: p1
        peak_power_kw: 10
    members:
      - id: a
        cups: {cups(1)}
        contracted_power_kw: 4.6
      - id: b
        cups: {cups(2)}
        contracted_power_kw: 3.45
    devices:
      - id: meter-a
        role: consumption
        member: a
      - id: inverter
        role: generation
        plant: p1
    coefficients:
      - effective_from: 2026-01-01
        file: ES0021000000000009ZZ1FA001_2026.txt
"""
GOOD_COEFFICIENTS = f"{cups(1)};0,600000\n{cups(2)};0,400000\n"


def test_minimal_registry_is_valid(tmp_path):
    registry = load_registry(write(tmp_path, BASE, GOOD_COEFFICIENTS))
    assert registry.community("c1").coefficient("b", JUNE_NOON_MS) == pytest.approx(0.4)


def test_bad_cups_check_letters_name_the_line(tmp_path):
    wrong = cups(2)[:-2] + ("AA" if not cups(2).endswith("AA") else "BB")
    body = BASE.replace(cups(2), wrong)
    with pytest.raises(RegistryError, match=r"registry.yaml:12: .*member b.*CUPS"):
        load_registry(write(tmp_path, body, GOOD_COEFFICIENTS.replace(cups(2), wrong)))


def test_coefficients_not_summing_to_one(tmp_path):
    with pytest.raises(RegistryError, match=r"_2026.txt.*sum to 0.900000.*coefficients at"):
        load_registry(write(tmp_path, BASE, f"{cups(1)};0,600000\n{cups(2)};0,300000\n"))


def test_duplicate_device_names_both_lines(tmp_path):
    body = BASE.replace("      - id: inverter\n", "      - id: meter-a\n")
    with pytest.raises(RegistryError, match=r"registry.yaml:18: .*duplicate device 'meter-a' "
                                            r"\(first at line 15\)"):
        load_registry(write(tmp_path, body, GOOD_COEFFICIENTS))


def test_device_pointing_at_unknown_member(tmp_path):
    body = BASE.replace("member: a", "member: zz")
    with pytest.raises(RegistryError, match=r"registry.yaml:17: .*unknown member 'zz'"):
        load_registry(write(tmp_path, body, GOOD_COEFFICIENTS))


def test_wrong_type_names_the_key(tmp_path):
    body = BASE.replace("contracted_power_kw: 4.6", "contracted_power_kw: mucho")
    with pytest.raises(RegistryError, match=r"registry.yaml:10: .*'contracted_power_kw' must be"):
        load_registry(write(tmp_path, body, GOOD_COEFFICIENTS))


def test_coefficient_file_for_a_stranger(tmp_path):
    with pytest.raises(RegistryError, match="not a member"):
        load_registry(write(tmp_path, BASE, GOOD_COEFFICIENTS + f"{cups(3)};0,000000\n"))
