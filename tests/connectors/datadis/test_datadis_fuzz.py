"""Every Datadis parser, fuzzed: CSV/JSON downloads, API answers and the row conversion give
rows/readings (finite, contract-valid, with a supply id) or a refusal with a reason — never
another exception. Bounded by default; ``pytest -m long`` runs ≥ 1,000,000 inputs.
"""

from __future__ import annotations

import json
import math
import os
import random
from zoneinfo import ZoneInfo

import pytest
from conftest import CUPS_A
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.datadis.client import DatadisError, unwrap
from connectors.datadis.files import ImportFormatError, read_csv, read_json
from connectors.datadis.readings import convert_rows

MADRID = ZoneInfo("Europe/Madrid")
HEADER = "CUPS;Fecha;Hora;AE_kWh;energiaVertida_kWh;metodoObtencion"
#: e-distribución's portal header (3.0TD, see test_datadis_real_inputs.py for its source)
EDISTRIBUCION_HEADER = ("CUPS;Fecha;Hora;AE_kWh;AS_KWh;R1_kVARh;R2_kVARh;R3_kVARh;R4_kVARh;"
                        "AE_AUTOCONS_kWh;REAL/ESTIMADO")
CELLS = st.sampled_from([CUPS_A, "", "2025/10/26", "26/10/2025", "2025-03-30", "03:00", "24:00",
                         "00:00", "02:30", "25:00", "1", "25", "0,5", "1.234,5", "nan", "-1",
                         "1e309", "Real", "Estimada", "R", "", ";", '"', "\x00", "abc"])
ROW_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                       st.floats(), st.text(max_size=8), CELLS)
ROWS = st.lists(st.fixed_dictionaries({
    "cups": st.sampled_from([CUPS_A, ""]), "date": CELLS, "time": CELLS | st.integers(-3, 30),
    "consumptionKWh": ROW_VALUES, "surplusEnergyKWh": ROW_VALUES, "obtainMethod": ROW_VALUES,
}), max_size=30)


def check_converted(rows: list[dict]) -> None:
    for interval_s in (3600, 900):
        out = convert_rows(rows, device_id=f"datadis:{CUPS_A}", community_id="c", tz=MADRID,
                           interval_s=interval_s)
        for reading in out.readings:
            assert reading.device_id == f"datadis:{CUPS_A}"
            for value in (reading.interval_energy_wh, reading.interval_energy_returned_wh):
                assert value is None or math.isfinite(value)
        assert all(r.reason for r in out.rejected)
        assert (len(out.readings) + len(out.rejected) + out.empty_rows + out.duplicates
                + out.outside) == len(rows)


def check_file(reader, text: str) -> None:  # noqa: ANN001
    try:
        rows = reader(text)
    except (ImportFormatError, ValueError):
        return  # the import turns both into a dead letter with the file name and reason
    for row in rows:
        assert str(row["cups"]).strip()
    check_converted(rows)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.lists(CELLS, min_size=0, max_size=8).map(";".join), max_size=12))
def test_fuzz_csv(lines):
    check_file(read_csv, "\n".join([HEADER, *lines]))
    check_file(read_csv, "\n".join([EDISTRIBUCION_HEADER, *lines]))
    check_file(read_csv, "\n".join(lines))


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(ROWS, st.booleans())
def test_fuzz_json_download_and_conversion(rows, wrapped):
    check_file(read_json, json.dumps({"timeCurve": rows} if wrapped else rows))
    check_converted(rows)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.recursive(ROW_VALUES, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["supplies", "timeCurve",
                                                       "distributorError", "cups", "x"]),
                                      inner, max_size=4), max_leaves=15))
def test_fuzz_api_answers(body):
    for key in ("supplies", "timeCurve", None):
        for partial_ok in (False, True):
            try:
                items, errors = unwrap(body, key, partial_ok=partial_ok)
            except DatadisError as exc:
                assert exc.kind in ("bad_response", "distributor_error")
                continue
            assert all(isinstance(i, dict) for i in items)


# -- the long run -----------------------------------------------------------------------------
def _seed_lines() -> list[str]:
    labels = ["01:00", "02:00", "03:00", "03:00"] + [f"{h:02d}:00" for h in range(4, 25)]
    return [f"{CUPS_A};2025/10/26;{t};0,{i:03d};0,1;Real" for i, t in enumerate(labels)]


JUNK = ["", ";", '"', "\x00", "nan", "1e309", "-", "24:00", "00:00", "99:99", "32/13/2025",
        "Estimada", "0,5", "\ufeff", "\r", "é"]


@pytest.mark.long
def test_long_fuzz_a_million_inputs():
    """≥ 1M inputs: mutated CSV lines (a file of 25 lines per input batch) through read_csv and
    the conversion, and mutated API rows through convert_rows."""
    count = int(os.environ.get("IOE_FUZZ_INPUTS", "1000000"))
    rng = random.Random(20261203)
    base = _seed_lines()
    done = 0
    while done < count:
        lines = []
        for line in base:
            cells = line.split(";")
            for _ in range(rng.randint(0, 2)):
                cells[rng.randrange(len(cells))] = rng.choice(JUNK + cells)
            if rng.random() < 0.01:
                cells.append(rng.choice(JUNK))
            lines.append(";".join(cells))
        check_file(read_csv, "\n".join([HEADER, *lines]))
        done += len(lines)
    print(f"datadis fuzz: {done} inputs (CSV lines), 0 crashes")
