"""Fixtures of the Datadis tests: the fake service, valid CUPS, a small registry."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from stdnum.es import cups as stdnum_cups

sys.path.insert(0, str(Path(__file__).parent))

from fake_datadis import FakeDatadis, Supply  # noqa: E402

NIF = "12345678Z"  # the community manager's account (a valid DNI)
PASSWORD = "Sup3r-Secreta!2026"
MEMBER_NIF = "87654321X"  # a member who authorized the manager's account


def make_cups(n: int, distributor: str = "0021") -> str:
    body = f"ES{distributor}{n:012d}"
    return body + stdnum_cups.calc_check_digits(body)


CUPS_A = make_cups(380404050463)  # member m1, E-distribución
CUPS_B = make_cups(310451747942, "0031")  # member m2, i-DE (extra 00:00 rows)
CUPS_C = make_cups(302959018947)  # member m3, authorized by its holder (authorizedNif)
CUPS_PLANT = make_cups(84908453624)  # the plant, with surplus


def supplies() -> list[Supply]:
    return [
        Supply(CUPS_A + "0F", "2", 5),
        Supply(CUPS_B, "8", 5),
        Supply(CUPS_C + "0F", "2", 5, authorized_by=MEMBER_NIF),
        Supply(CUPS_PLANT + "1F", "2", 3, surplus=True),
    ]


@pytest.fixture
def fake() -> Iterator[FakeDatadis]:
    with FakeDatadis(users={NIF: PASSWORD}, supplies=supplies()) as server:
        yield server


REGISTRY_YAML = f"""
communities:
  - id: ce-test
    name: Comunidad de prueba
    timezone: Europe/Madrid
    location: {{latitude: 39.48, longitude: -0.36}}
    plants:
      - id: plant-1
        cups: {CUPS_PLANT}
        peak_power_kw: 30
    members:
      - id: m1
        cups: {CUPS_A}
        contracted_power_kw: 3.45
      - id: m2
        cups: {CUPS_B}
        contracted_power_kw: 4.6
      - id: m3
        cups: {CUPS_C}
        contracted_power_kw: 3.45
"""

CONFIG_YAML = f"""
communities:
  ce-test:
    supplies:
      {CUPS_C}: {{authorized_nif: "{MEMBER_NIF}"}}
"""


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "community.yaml"
    path.write_text(REGISTRY_YAML, encoding="utf-8")
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "datadis.yaml"
    path.write_text(CONFIG_YAML, encoding="utf-8")
    return path
