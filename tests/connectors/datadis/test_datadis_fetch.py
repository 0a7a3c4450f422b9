"""``ioe datadis fetch --print`` and ``import`` end to end against the fake service."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from conftest import CUPS_A, CUPS_B, CUPS_C, MEMBER_NIF, NIF, PASSWORD
from fake_datadis import value_kwh
from test_datadis_time import MARCH_EXPECTED, OCTOBER_EXPECTED

from ioe.cli import main
from ioe.reading import Reading


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def fetch(fake, tmp_path, capsys, *extra: str, cups: str = CUPS_A, dist: str = "2",
          months=("2025-03", "2025-03")) -> tuple[int, list[Reading]]:
    code = main(["datadis", "--state-dir", str(tmp_path / "state"), "--timeout", "5",
                 "fetch", "--base-url", fake.url, "--username", NIF, "--password", PASSWORD,
                 "--cups", cups, "--distributor", dist, "--from", months[0], "--to", months[1],
                 "--print", *extra])
    out = capsys.readouterr().out
    return code, [Reading.from_json(line) for line in out.splitlines() if line.strip()]


def day(readings, start: str, end: str):
    return [r for r in readings if start < iso(r.ts_ms) <= end]


def test_fetch_march_and_october_hour_by_hour(fake, tmp_path, capsys):
    code, readings = fetch(fake, tmp_path, capsys, months=("2025-03", "2025-03"))
    assert code == 0
    march_30 = day(readings, "2025-03-29T23:00Z", "2025-03-30T22:00Z")
    # hours with a null consumption are absent ("no data yet"), the rest exactly in place
    expected = [t for t in MARCH_EXPECTED]
    got = {iso(r.ts_ms): r for r in march_30}
    for stamp in expected:
        ms = int(datetime.strptime(stamp, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC).timestamp()
                 * 1000)
        if (ms // 3_600_000) % 97 == 0:  # the fake's null hours
            assert stamp not in got
            continue
        assert got[stamp].interval_energy_wh == pytest.approx(value_kwh(CUPS_A + "0F", ms)
                                                              * 1000)
    assert set(got) <= set(expected)
    assert all(r.device_id == f"datadis:{CUPS_A}" and r.interval_s == 3600 for r in readings)
    assert {r.quality for r in readings} == {"measured", "estimated"}

    code, readings = fetch(fake, tmp_path, capsys, months=("2025-10", "2025-10"))
    assert code == 0
    october_26 = day(readings, "2025-10-25T22:00Z", "2025-10-26T23:00Z")
    assert [iso(r.ts_ms) for r in october_26] == [
        s for s in OCTOBER_EXPECTED
        if (int(datetime.strptime(s, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC).timestamp())
            // 3600) % 97 != 0]
    # a whole month: 31 days + 1 hour, minus the null hours, no duplicates
    assert len({r.ts_ms for r in readings}) == len(readings)
    assert iso(max(r.ts_ms for r in readings)) == "2025-10-31T23:00Z"  # 31st 24:00 CET
    assert iso(min(r.ts_ms for r in readings)) == "2025-09-30T23:00Z"  # 1st 01:00 CEST


def test_fetch_ide_cups_across_months_has_no_duplicate(fake, tmp_path, capsys):
    code, readings = fetch(fake, tmp_path, capsys, cups=CUPS_B, dist="8",
                           months=("2025-01", "2025-02"))
    assert code == 0
    stamps = [r.ts_ms for r in readings]
    assert len(stamps) == len(set(stamps))
    # the extra 00:00 row of 1 February is 31 January 24:00, published once, from January
    assert iso(max(r.ts_ms for r in readings if iso(r.ts_ms) < "2025-02-01")) == \
        "2025-01-31T23:00Z"
    # and the extra row of 1 January (31 December 24:00) is not published at all
    assert iso(min(stamps)) == "2025-01-01T00:00Z"


def test_fetch_quarter_hourly(fake, tmp_path, capsys):
    code, readings = fetch(fake, tmp_path, capsys, "--quarter-hourly",
                           months=("2025-10", "2025-10"))
    assert code == 0
    assert all(r.interval_s == 900 for r in readings)
    october_26 = day(readings, "2025-10-25T22:00Z", "2025-10-26T23:00Z")
    assert len({r.ts_ms for r in october_26}) == len(october_26) > 90


def test_fetch_distributor_from_supplies_and_authorized_nif(fake, tmp_path, capsys):
    code = main(["datadis", "--state-dir", str(tmp_path / "state"), "fetch",
                 "--base-url", fake.url, "--username", NIF, "--password", PASSWORD,
                 "--cups", CUPS_C, "--authorized-nif", MEMBER_NIF, "--from", "2025-06",
                 "--to", "2025-06", "--print"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 700
    call = fake.calls("get-consumption")[0]
    assert call.query["cups"] == CUPS_C + "0F"  # exactly as get-supplies spells it
    assert call.query["distributorCode"] == "2" and call.query["pointType"] == "5"


def test_fetch_password_from_env_or_file(fake, tmp_path, capsys, monkeypatch):
    secret_file = tmp_path / "pw"
    secret_file.write_text(PASSWORD + "\n")
    base = ["datadis", "--state-dir", str(tmp_path / "state"), "fetch", "--base-url", fake.url,
            "--username", NIF, "--cups", CUPS_A, "--distributor", "2", "--print"]
    assert main(base + ["--password-file", str(secret_file), "--from", "2025-01",
                        "--to", "2025-01"]) == 0
    monkeypatch.setenv("IOE_DATADIS_PASSWORD", PASSWORD)
    assert main(base + ["--from", "2025-02", "--to", "2025-02"]) == 0
    monkeypatch.delenv("IOE_DATADIS_PASSWORD")
    assert main(base + ["--from", "2025-03", "--to", "2025-03"]) == 2  # no password at all
    capsys.readouterr()


def test_fetch_reports_failure_with_exit_code(fake, tmp_path, capsys):
    fake.script("get-consumption-data-v2", "distributor_error")
    code, readings = fetch(fake, tmp_path, capsys, months=("2025-04", "2025-04"))
    assert code == 1 and readings == []


def test_import_csv_and_json_downloads(tmp_path, capsys):
    folder = tmp_path / "downloads"
    folder.mkdir()
    lines = ["CUPS;Fecha;Hora;Consumo_kWh;Metodo_obtencion;Energia_vertida_kWh"]
    labels = ["01:00", "02:00", "03:00", "03:00"] + [f"{h:02d}:00" for h in range(4, 25)]
    for i, label in enumerate(labels):
        lines.append(f"{CUPS_A};2025/10/26;{label};{i},5;{'Estimada' if i == 0 else 'Real'};")
    (folder / "consumo.csv").write_text("\n".join(lines), encoding="utf-8")
    items = [{"cups": CUPS_B, "date": "2025/03/30", "time": t, "consumptionKWh": 1.0,
              "obtainMethod": "Real"} for t in ["01:00", "02:00", "04:00"]]
    (folder / "sub").mkdir()
    (folder / "sub" / "consumo.json").write_text(json.dumps({"timeCurve": items}))
    (folder / "notes.txt").write_text("ignored")
    code = main(["datadis", "import", str(folder), "--print"])
    out = capsys.readouterr().out
    readings = [Reading.from_json(line) for line in out.splitlines()]
    assert code == 0
    by_device: dict[str, list[Reading]] = {}
    for r in readings:
        by_device.setdefault(r.device_id, []).append(r)
    a = by_device[f"datadis:{CUPS_A}"]
    assert [iso(r.ts_ms) for r in a] == OCTOBER_EXPECTED
    assert a[0].quality == "estimated" and a[0].interval_energy_wh == 500.0
    assert a[3].interval_energy_wh == 3500.0  # the second 03:00 (winter time)
    b = by_device[f"datadis:{CUPS_B}"]
    assert [iso(r.ts_ms) for r in b] == MARCH_EXPECTED[:3]


def test_import_bad_file_is_reported(tmp_path, capsys, caplog):
    (tmp_path / "broken.csv").write_text("a;b\n1;2\n")
    caplog.set_level(logging.INFO)
    assert main(["datadis", "import", str(tmp_path), "--print"]) == 1
    err = capsys.readouterr().err
    assert '"reason":"decode_error"' in err
