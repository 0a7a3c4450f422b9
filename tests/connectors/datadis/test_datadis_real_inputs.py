"""Datadis inputs as they really come (issue 16): today's CSV headers, rows without a CUPS,
a get-supplies-v2 answer with one distributor's error.

Sources of the shapes: the header of the datadis.es consumption download as quoted in issue 16
(``energiaVertida_kWh``, ``energiaGenerada_kWh``, ``energiaAutoconsumida_kWh``,
``metodoObtencion``; ``AE_kWh`` for consumption); the older ``Energia_vertida_kWh`` spelling of
the same download in the fixture of rubiojr/ergs ``importers/datadis-importer/README.md``; the
``distributorError`` entries of API v2 answers (code 2, "no puede facilitar información a ese
NIF") as documented by Datadis and reproduced by ``fake_datadis.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from conftest import CUPS_A, CUPS_B, NIF, PASSWORD

from connectors.datadis.client import DatadisClient
from connectors.datadis.files import ImportFormatError, normalise_header, read_csv, read_json
from connectors.datadis.ledger import Ledger
from connectors.datadis.readings import convert_rows
from ioe.cli import main
from ioe.reading import Reading

MADRID = ZoneInfo("Europe/Madrid")
TODAY_HEADER = ("CUPS;Fecha;Hora;AE_kWh;energiaVertida_kWh;energiaGenerada_kWh;"
                "energiaAutoconsumida_kWh;metodoObtencion")


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def test_todays_header_keeps_the_surplus_column():
    text = "\n".join([TODAY_HEADER,
                      f"{CUPS_A};2025/06/15;12:00;0,120;1,250;1,500;0,250;Real",
                      f"{CUPS_A};2025/06/15;13:00;0,080;1,400;1,600;0,200;Estimada"])
    rows = read_csv(text)
    assert rows[0]["surplusEnergyKWh"] == "1,250" and rows[0]["obtainMethod"] == "Real"
    assert rows[0]["generationEnergyKWh"] == "1,500"
    assert rows[0]["selfConsumptionEnergyKWh"] == "0,250"
    out = convert_rows(rows, device_id=f"datadis:{CUPS_A}", community_id=None, tz=MADRID,
                       interval_s=3600)
    # 12:00 CEST ends at 10:00 UTC; 1,250 kWh exported = 1250 Wh, 0,120 kWh drawn = 120 Wh
    assert [(iso(r.ts_ms), r.interval_energy_wh, r.interval_energy_returned_wh, r.quality)
            for r in out.readings] == [
        ("2025-06-15T10:00Z", 120.0, 1250.0, "measured"),
        ("2025-06-15T11:00Z", 80.0, 1400.0, "estimated")]


@pytest.mark.parametrize("spelling", [
    "energiaVertida_kWh", "Energia_vertida_kWh", "Energía vertida (kWh)", "ENERGIA-VERTIDA-KWH",
    "surplusEnergyKWh", "AS_kWh"])
def test_header_spellings_are_one_name(spelling):
    assert normalise_header(spelling) in ("energiavertidakwh", "surplusenergykwh", "askwh")
    rows = read_csv(f"CUPS;Fecha;Hora;Consumo_kWh;{spelling}\n{CUPS_A};2025/06/15;01:00;1;2\n")
    assert rows[0]["surplusEnergyKWh"] == "2"


def test_a_column_the_importer_does_not_understand_is_reported():
    with pytest.raises(ImportFormatError, match="energiaReactiva_kVArh"):
        read_csv(f"{TODAY_HEADER};energiaReactiva_kVArh\n"
                 f"{CUPS_A};2025/06/15;01:00;1;0;0;0;Real;3\n")
    with pytest.raises(ImportFormatError, match="weird"):
        read_json('[{"cups": "x", "date": "2025/06/15", "time": "01:00", "weird": 1}]')


#: e-distribución's portal download (3.0TD supply: reactive energy by quadrant too). The header
#: is the portal's as third-party e-distribución importers read it (public code index: parsers
#: reading ``AE_kWh``/``AS_KWh``/``AE_AUTOCONS_kWh``/``R1_kVARh``…``R4_kVARh``/``REAL/ESTIMADO``
#: with ``DD/MM/YYYY`` dates and ordinal hours 1…24, and a CLI that writes "the header of the
#: portal (CUPS;Fecha;Hora;AE_kWh;AS_KWh;AE_AUTOCONS_kwh;REAL/ESTIMADO)")
EDISTRIBUCION_HEADER = ("CUPS;Fecha;Hora;AE_kWh;AS_KWh;R1_kVARh;R2_kVARh;R3_kVARh;R4_kVARh;"
                        "AE_AUTOCONS_kWh;REAL/ESTIMADO")


def test_edistribucion_portal_export_with_reactive_columns(caplog):
    text = "\n".join([EDISTRIBUCION_HEADER,
                      f"{CUPS_A};15/06/2025;12;0,120;1,250;0,010;0;0;0,002;0,250;R",
                      f"{CUPS_A};15/06/2025;13;0,080;1,400;0;0;0;0;;E"])
    with caplog.at_level("INFO", logger="connectors.datadis.files"):
        rows = read_csv(text)
    assert rows[0]["selfConsumptionEnergyKWh"] == "0,250"
    assert "R1_kVARh (reactive energy, quadrant 1)" in caplog.text  # named, not silent
    out = convert_rows(rows, device_id=f"datadis:{CUPS_A}", community_id=None, tz=MADRID,
                       interval_s=3600)
    # hour 12 of 15/06 is 11:00–12:00 CEST, ending 10:00 UTC; 0,120 kWh = 120 Wh drawn,
    # 1,250 kWh = 1250 Wh exported; R = measured, E = estimated
    assert [(iso(r.ts_ms), r.interval_energy_wh, r.interval_energy_returned_wh, r.quality)
            for r in out.readings] == [
        ("2025-06-15T10:00Z", 120.0, 1250.0, "measured"),
        ("2025-06-15T11:00Z", 80.0, 1400.0, "estimated")]
    assert normalise_header("AE_AUTOCONS_kwh") == "aeautoconskwh"  # the CLI's spelling


def test_distributor_portal_dates_day_first():
    rows = read_csv(f"CUPS;Fecha;Hora;Consumo_kWh\n{CUPS_A};26/10/2025;1;0,5\n")
    assert rows[0]["date"] == "2025/10/26" and rows[0]["ordinal"] == 1


def test_a_row_without_cups_is_refused_before_anything_is_published(tmp_path, capsys):
    text = "\n".join(["CUPS;Fecha;Hora;Consumo_kWh;Metodo_obtencion",
                      f"{CUPS_A};2025/06/15;01:00;0,5;Real",
                      ";2025/06/15;02:00;0,5;Real"])
    with pytest.raises(ImportFormatError, match="line 3: empty CUPS"):
        read_csv(text)
    (tmp_path / "consumo.csv").write_text(text, encoding="utf-8")
    assert main(["datadis", "import", str(tmp_path), "--print"]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == ""  # not even the good row of the rejected file
    assert '"reason":"decode_error"' in captured.err and "empty CUPS" in captured.err
    # and the conversion itself never builds a reading of the device "datadis:"
    out = convert_rows([{"cups": "", "date": "2025/06/15", "time": "01:00",
                         "consumptionKWh": 1.0}], device_id="datadis:", community_id=None,
                       tz=MADRID, interval_s=3600)
    assert out.readings == [] and [r.reason for r in out.rejected] == ["invalid_reading"]


def test_get_supplies_with_one_distributors_error_uses_the_others(fake, tmp_path):
    fake.script("get-supplies-v2", "partial_distributor_error")
    ledger = Ledger(tmp_path / "state")
    client = DatadisClient(username=NIF, password=PASSWORD, ledger=ledger, base_url=fake.url,
                           timeout_s=5.0)
    try:
        answer = client.supplies()
        assert [s["cups"] for s in answer.items] == [CUPS_B]  # I-DE's supply came back
        assert [e["errorCode"] for e in answer.distributor_errors] == ["2"]
        assert client.metrics.value("ioe_datadis_distributor_errors",
                                    endpoint="get-supplies-v2", distributor="2") == 1
        assert client.metrics.value("ioe_datadis_requests", endpoint="get-supplies-v2",
                                    outcome="partial") == 1
        again = client.supplies()  # from the 24 h ledger: same items, not counted twice
        assert again.cached and [s["cups"] for s in again.items] == [CUPS_B]
        assert client.metrics.value("ioe_datadis_distributor_errors",
                                    endpoint="get-supplies-v2", distributor="2") == 1
    finally:
        client.close()
        ledger.close()


def test_fetch_goes_on_with_the_supplies_that_came_back(fake, tmp_path, capsys):
    fake.script("get-supplies-v2", "partial_distributor_error")
    code = main(["datadis", "--state-dir", str(tmp_path / "state"), "--timeout", "5",
                 "fetch", "--base-url", fake.url, "--username", NIF, "--password", PASSWORD,
                 "--cups", CUPS_B, "--from", "2025-01", "--to", "2025-01", "--print"])
    readings = [Reading.from_json(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert readings and {r.device_id for r in readings} == {f"datadis:{CUPS_B}"}
