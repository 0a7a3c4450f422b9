"""Datadis labels → UTC, checked hour by hour against values worked out by hand.

Madrid is UTC+1 in winter (CET) and UTC+2 in summer (CEST). 2025-03-30: 02:00 CET jumps to
03:00 CEST (local day = 23 h, from 2025-03-29T23:00Z to 2025-03-30T22:00Z). 2025-10-26:
03:00 CEST goes back to 02:00 CET (local day = 25 h, from 2025-10-25T22:00Z to
2025-10-26T23:00Z). The reading's ts_ms is the END of the interval.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from connectors.datadis.files import read_csv
from connectors.datadis.readings import convert_rows, parse_kwh, quality_of
from ioe.datadis_time import month_bounds_ms, place_rows

MADRID = ZoneInfo("Europe/Madrid")


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def rows_for(day: str, labels: list[str]) -> list[dict]:
    return [{"cups": "ES0021000000000001RK", "date": day, "time": t,
             "consumptionKWh": round(0.1 * (i + 1), 3), "obtainMethod": "Real"}
            for i, t in enumerate(labels)]


# the labels Datadis writes, typed by hand
MARCH_LABELS = ["01:00", "02:00"] + [f"{h:02d}:00" for h in range(4, 25)]
OCTOBER_LABELS = ["01:00", "02:00", "03:00", "03:00"] + [f"{h:02d}:00" for h in range(4, 25)]

MARCH_EXPECTED = [
    "2025-03-30T00:00Z",  # 01:00 CET
    "2025-03-30T01:00Z",  # 02:00 CET (= 03:00 CEST)
    "2025-03-30T02:00Z",  # 04:00 CEST
    "2025-03-30T03:00Z", "2025-03-30T04:00Z", "2025-03-30T05:00Z", "2025-03-30T06:00Z",
    "2025-03-30T07:00Z", "2025-03-30T08:00Z", "2025-03-30T09:00Z", "2025-03-30T10:00Z",
    "2025-03-30T11:00Z", "2025-03-30T12:00Z", "2025-03-30T13:00Z", "2025-03-30T14:00Z",
    "2025-03-30T15:00Z", "2025-03-30T16:00Z", "2025-03-30T17:00Z", "2025-03-30T18:00Z",
    "2025-03-30T19:00Z", "2025-03-30T20:00Z", "2025-03-30T21:00Z",
    "2025-03-30T22:00Z",  # 24:00 = midnight CEST of the 31st
]
OCTOBER_EXPECTED = [
    "2025-10-25T23:00Z",  # 01:00 CEST
    "2025-10-26T00:00Z",  # 02:00 CEST
    "2025-10-26T01:00Z",  # first 03:00: the summer-time hour (03:00 CEST)
    "2025-10-26T02:00Z",  # second 03:00: the winter-time hour (03:00 CET)
    "2025-10-26T03:00Z",  # 04:00 CET
    "2025-10-26T04:00Z", "2025-10-26T05:00Z", "2025-10-26T06:00Z", "2025-10-26T07:00Z",
    "2025-10-26T08:00Z", "2025-10-26T09:00Z", "2025-10-26T10:00Z", "2025-10-26T11:00Z",
    "2025-10-26T12:00Z", "2025-10-26T13:00Z", "2025-10-26T14:00Z", "2025-10-26T15:00Z",
    "2025-10-26T16:00Z", "2025-10-26T17:00Z", "2025-10-26T18:00Z", "2025-10-26T19:00Z",
    "2025-10-26T20:00Z", "2025-10-26T21:00Z", "2025-10-26T22:00Z",
    "2025-10-26T23:00Z",  # 24:00 = midnight CET of the 27th
]


def convert(rows, interval_s=3600, window=None):
    return convert_rows(rows, device_id="datadis:ES0021000000000001RK", community_id="c1",
                        tz=MADRID, interval_s=interval_s, window_ms=window)


def test_march_day_has_23_hours_in_order():
    assert len(MARCH_LABELS) == 23 and "03:00" not in MARCH_LABELS
    out = convert(rows_for("2025/03/30", MARCH_LABELS))
    assert [iso(r.ts_ms) for r in out.readings] == MARCH_EXPECTED
    assert [r.interval_energy_wh for r in out.readings] == [
        round(100.0 * (i + 1), 3) for i in range(23)]
    assert not out.rejected


def test_october_day_has_25_hours_and_03_00_twice():
    assert len(OCTOBER_LABELS) == 25
    out = convert(rows_for("2025/10/26", OCTOBER_LABELS))
    assert [iso(r.ts_ms) for r in out.readings] == OCTOBER_EXPECTED
    # the first 03:00 row (0.3 kWh) is summer time, the second (0.4 kWh) winter time
    by_ts = {iso(r.ts_ms): r.interval_energy_wh for r in out.readings}
    assert by_ts["2025-10-26T01:00Z"] == 300.0
    assert by_ts["2025-10-26T02:00Z"] == 400.0
    assert all(r.interval_s == 3600 and r.source == "datadis" for r in out.readings)


def test_ordinary_day_and_24_00_is_next_midnight():
    labels = [f"{h:02d}:00" for h in range(1, 25)]
    out = convert(rows_for("2025/06/15", labels))
    assert iso(out.readings[0].ts_ms) == "2025-06-14T23:00Z"  # 01:00 CEST
    assert iso(out.readings[-1].ts_ms) == "2025-06-15T22:00Z"  # 24:00 = 16th 00:00 CEST
    assert len({r.ts_ms for r in out.readings}) == 24


def test_missing_hours_do_not_shift_the_following_ones():
    labels = ["01:00", "02:00", "03:00", "03:00", "05:00", "06:00"]  # 04:00 missing
    out = convert(rows_for("2025/10/26", labels))
    assert [iso(r.ts_ms) for r in out.readings] == [
        "2025-10-25T23:00Z", "2025-10-26T00:00Z", "2025-10-26T01:00Z", "2025-10-26T02:00Z",
        "2025-10-26T04:00Z", "2025-10-26T05:00Z"]


def test_ide_extra_00_00_row_is_the_previous_24_00_and_not_duplicated():
    day1 = rows_for("2025/01/01", [f"{h:02d}:00" for h in range(1, 25)])
    extra = {"cups": "x", "date": "2025/01/02", "time": "00:00", "consumptionKWh": 2.4,
             "obtainMethod": "Real"}
    day2 = rows_for("2025/01/02", ["01:00", "02:00"])
    out = convert(day1 + [extra] + day2)
    assert len(out.readings) == 26 and out.duplicates == 1
    assert [iso(r.ts_ms) for r in out.readings][23:] == [
        "2025-01-01T23:00Z", "2025-01-02T00:00Z", "2025-01-02T01:00Z"]
    # at the start of a month query it belongs to the previous month: kept out of the window
    only = convert([dict(extra, date="2025/02/01")] + rows_for("2025/02/01", ["01:00"]),
                   window=month_bounds_ms(2025, 2, MADRID))
    assert [iso(r.ts_ms) for r in only.readings] == ["2025-02-01T00:00Z"] and only.outside == 1


def test_nulls_estimada_and_surplus():
    rows = [
        {"date": "2025/06/15", "time": "01:00", "consumptionKWh": 0.512,
         "obtainMethod": "Estimada", "surplusEnergyKWh": 0.25},
        {"date": "2025/06/15", "time": "02:00", "consumptionKWh": None, "obtainMethod": ""},
        {"date": "2025/06/15", "time": "03:00", "consumptionKWh": "1,5",
         "obtainMethod": "Real"},
        {"date": "2025/06/15", "time": "04:00", "consumptionKWh": "abc", "obtainMethod": "Real"},
        {"date": "2025/06/15", "time": "25:00", "consumptionKWh": 1, "obtainMethod": "Real"},
    ]
    out = convert(rows)
    first, second = out.readings
    assert (first.quality, first.interval_energy_wh, first.interval_energy_returned_wh) == (
        "estimated", 512.0, 250.0)
    assert (second.quality, second.interval_energy_wh, second.interval_energy_returned_wh) == (
        "measured", 1500.0, None)
    assert out.empty_rows == 1  # null = no data yet, never a zero reading
    assert sorted(r.reason for r in out.rejected) == ["bad_time", "invalid_value"]


def test_quarter_hours_across_the_october_change():
    labels = []
    for minutes in range(15, 24 * 60 + 1, 15):
        labels.append(f"{minutes // 60:02d}:{minutes % 60:02d}")
    # Datadis repeats 02:15…03:00 for the winter-time hour
    repeated = ["02:15", "02:30", "02:45", "03:00"]
    at = labels.index("03:00") + 1
    labels = labels[:at] + repeated + labels[at:]
    assert len(labels) == 100
    out = convert(rows_for("2025/10/26", labels), interval_s=900)
    stamps = [iso(r.ts_ms) for r in out.readings]
    assert stamps[:2] == ["2025-10-25T22:15Z", "2025-10-25T22:30Z"]
    assert stamps[8:16] == ["2025-10-26T00:15Z", "2025-10-26T00:30Z", "2025-10-26T00:45Z",
                            "2025-10-26T01:00Z", "2025-10-26T01:15Z", "2025-10-26T01:30Z",
                            "2025-10-26T01:45Z", "2025-10-26T02:00Z"]
    assert stamps[-1] == "2025-10-26T23:00Z" and len(set(stamps)) == 100


def test_csv_with_ordinal_hours_and_decimal_commas():
    lines = ["CUPS;Fecha;Hora;Consumo_kWh;Metodo_obtencion;Energia_vertida_kWh"]
    for n in range(1, 26):
        lines.append(f"ES0021000000000001RK;26/10/2025;{n};0,{n:03d};R;")
    rows = read_csv("\n".join(lines))
    out = convert(rows)
    assert [iso(r.ts_ms) for r in out.readings] == OCTOBER_EXPECTED
    assert out.readings[2].interval_energy_wh == 3.0
    assert out.readings[0].quality == "measured"


def test_place_rows_reports_unplaceable_rows():
    placed = place_rows([("2025/03/30", "02:30"), ("not a date", "01:00"),
                         ("2025/10/26", "03:00"), ("2025/10/26", "03:00"),
                         ("2025/10/26", "03:00")], MADRID, 3600)
    # 02:30 is no hour end (hourly series): refused rather than guessed
    assert placed[0].end_ms is None and "does not exist" in (placed[0].error or "")
    assert placed[1].end_ms is None and "YYYY/MM/DD" in (placed[1].error or "")
    # October has two 03:00 hours, not three
    assert [iso(p.end_ms) for p in placed[2:4]] == ["2025-10-26T01:00Z", "2025-10-26T02:00Z"]
    assert placed[4].end_ms is None and "more than 2" in (placed[4].error or "")


def test_march_03_00_is_another_name_of_02_00_and_never_a_second_hour():
    """One rule for the connector and ``ioe settle`` (ioe.datadis_time): some exports label the
    March hour ending at the jump 03:00 instead of 02:00. It is the same instant (01:00 UTC), so
    a day giving both yields one reading and a counted duplicate — never two hours at once."""
    (alone,) = place_rows([("2025/03/30", "03:00")], MADRID, 3600)
    assert iso(alone.end_ms) == "2025-03-30T01:00Z"
    out = convert(rows_for("2025/03/30", ["01:00", "02:00", "03:00", "04:00"]))
    assert [iso(r.ts_ms) for r in out.readings] == [
        "2025-03-30T00:00Z", "2025-03-30T01:00Z", "2025-03-30T02:00Z"]
    assert out.readings[1].interval_energy_wh == 200.0 and out.duplicates == 1


def test_number_and_quality_tables():
    assert parse_kwh("1.234,5") == 1234.5
    assert parse_kwh("") is None and parse_kwh(None) is None and parse_kwh(0) == 0.0
    assert quality_of("Real") == "measured" and quality_of("Estimada") == "estimated"
    assert quality_of("") == "estimated"
