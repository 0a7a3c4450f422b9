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


# -- the classes the registry fuzz found (tests/ioe/test_registry_fuzz.py), from a real file --
def test_an_empty_list_item_names_the_list_line(tmp_path):
    """A `-` with nothing after it is None: refused at the line of its list's key (line 7,
    ``members:``), not a TypeError from reading keys of None."""
    body = BASE.replace("    members:\n", "    members:\n      -\n")
    with pytest.raises(RegistryError, match=r"registry.yaml:7: .*item 1 of 'members' must be "
                                            r"a mapping, got None"):
        load_registry(write(tmp_path, body, GOOD_COEFFICIENTS))


def test_a_coefficients_item_that_is_a_word(tmp_path):
    body = BASE.replace("      - effective_from: 2026-01-01\n"
                        "        file: ES0021000000000009ZZ1FA001_2026.txt\n",
                        "      - ES0021000000000009ZZ1FA001_2026.txt\n")
    with pytest.raises(RegistryError, match=r"registry.yaml:21: .*item 1 of 'coefficients'"):
        load_registry(write(tmp_path, body, GOOD_COEFFICIENTS))


@pytest.mark.parametrize(("price", "message"), [
    ('"0,145"', r"price 'energy_eur_kwh' must be a number \(decimal point, no quotes\), "
                r"got '0,145'"),
    (".inf", r"'energy_eur_kwh' must be finite"),
    ("-0.1", r"price 'energy_eur_kwh' must not be negative"),
    ("[1]", r"'energy_eur_kwh' must be an integer or a number, got \[1\]"),
])
def test_prices_must_be_finite_non_negative_numbers(tmp_path, price, message):
    body = BASE.replace("    location:", f"    prices:\n      energy_eur_kwh: {price}\n"
                                        "    location:")
    with pytest.raises(RegistryError, match=rf"registry.yaml:4: .*{message}"):
        load_registry(write(tmp_path, body, GOOD_COEFFICIENTS))


def test_prices_are_kept_as_floats(tmp_path):
    body = BASE.replace("    location:", "    prices: {energy_eur_kwh: 0.145, surplus_eur_kwh: 0}\n"
                                        "    location:")
    community = load_registry(write(tmp_path, body, GOOD_COEFFICIENTS)).community("c1")
    assert community.prices == {"energy_eur_kwh": 0.145, "surplus_eur_kwh": 0.0}
    assert Community.from_json(community.to_json()).prices == community.prices


@pytest.mark.parametrize(("protocol", "message"), [
    ("{type: modbus, port: 1180591620717411303424}", r"protocol 'port' must be in 0…65535"),
    ("{type: modbus, port: 70000}", r"protocol 'port' must be in 0…65535, got 70000"),
    ("{type: mqtt, decoder: .inf}", r"protocol 'decoder' must be a string"),
    ("{type: mqtt, scale: .nan}", r"protocol 'scale' must be finite"),
    ("{type: mqtt, serial: 1180591620717411303424}", r"'serial': integer .* beyond 64 bits"),
    ("{type: mqtt, since: 2026-01-01}", r"'since': .* \(quote dates\)"),
    ("{type: mqtt, 7: x}", r"protocol key 7 must be a string"),
])
def test_protocol_options_must_survive_the_wire_form(tmp_path, protocol, message):
    """orjson raises on integers beyond 64 bits and writes NaN/inf as null: refused here, at
    the line of meter-a's ``protocol:`` (18), not at ``ioe registry apply``."""
    body = BASE.replace("        member: a\n", f"        member: a\n        protocol: {protocol}\n")
    with pytest.raises(RegistryError, match=rf"registry.yaml:18: .*{message}"):
        load_registry(write(tmp_path, body, GOOD_COEFFICIENTS))


def test_free_protocol_options_round_trip(tmp_path):
    protocol = "{type: mqtt, decoder: json, fields: {power_w: [a, 1.5]}, serial: 18446744073709551615}"
    body = BASE.replace("        member: a\n", f"        member: a\n        protocol: {protocol}\n")
    community = load_registry(write(tmp_path, body, GOOD_COEFFICIENTS)).community("c1")
    again = Community.from_json(community.to_json())
    assert again.device("meter-a").protocol == {
        "type": "mqtt", "decoder": "json", "fields": {"power_w": ["a", 1.5]},
        "serial": 2**64 - 1}


def test_a_missing_coefficient_file_is_a_registry_error(tmp_path):
    """FileNotFoundError escaped before: the bridge and the web server catch RegistryError."""
    with pytest.raises(RegistryError, match=r"registry.yaml:23: .*cannot read coefficient file "
                                            r".*ES0021000000000009ZZ1FA001_2026.txt"):
        load_registry(write(tmp_path, BASE))  # the file is not written


def test_a_number_too_large_for_a_float_is_refused(tmp_path):
    """An integer of 400 digits is a YAML int; float() of it raised OverflowError."""
    body = BASE.replace("contracted_power_kw: 4.6", f"contracted_power_kw: {10**400}")
    with pytest.raises(RegistryError, match=r"registry.yaml:10: .*'contracted_power_kw' is too "
                                            r"large"):
        load_registry(write(tmp_path, body, GOOD_COEFFICIENTS))


def second_community(member_cups: str) -> str:
    return f"""\
  - id: c2
    location: {{latitude: 41.0, longitude: -4.0}}
    members:
      - id: z
        cups: {member_cups}
        contracted_power_kw: 3.45
"""


def test_a_supply_point_takes_part_in_one_community_only(tmp_path):
    """RD 244/2019: one CUPS, one collective self-consumption (a second community is refused,
    naming both)."""
    assert load_registry(write(tmp_path, BASE + second_community(cups(7)),
                               GOOD_COEFFICIENTS)).community("c2") is not None
    with pytest.raises(RegistryError, match=rf"community c2: CUPS {cups(1)} of member z is "
                                            r"already in community 'c1'"):
        load_registry(write(tmp_path, BASE + second_community(cups(1)), GOOD_COEFFICIENTS))


@pytest.mark.parametrize("cid", ["c 1", "c.1", "-c1", "c1/x", "c" * 65, "comunitat·1"])
def test_a_community_id_must_be_safe_in_a_topic_name(tmp_path, cid):
    """It names the community's command topic (ioe.commands.<id>) and edges' ACLs."""
    with pytest.raises(RegistryError, match=r"registry.yaml:2: .*community id .*letters, digits"):
        load_registry(write(tmp_path, BASE.replace("id: c1", f"id: '{cid}'", 1),
                            GOOD_COEFFICIENTS))
