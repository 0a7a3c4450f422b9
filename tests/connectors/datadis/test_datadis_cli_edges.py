"""The Datadis command's rough edges: a month fetched again, a month deferred by a recent
failure, files imported twice, progress in logs. Against the fake Datadis (and the real Kafka
for the publishing import)."""

from __future__ import annotations

import logging
import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from conftest import CUPS_A, NIF, PASSWORD
from fake_datadis import value_kwh

from connectors.datadis.connector import Progress
from ioe.cli import main
from ioe.reading import Reading


def fetch(fake, state: Path, capsys, month: str = "2025-03") -> tuple[int, list[Reading]]:
    code = main(["datadis", "--state-dir", str(state), "--timeout", "5", "fetch", "--base-url",
                 fake.url, "--username", NIF, "--password", PASSWORD, "--cups", CUPS_A,
                 "--distributor", "2", "--from", month, "--to", month, "--print"])
    out = capsys.readouterr().out
    return code, [Reading.from_json(line) for line in out.splitlines() if line.strip()]


def test_fetch_print_of_a_month_already_fetched_prints_it_again(fake, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    code, first = fetch(fake, tmp_path / "state", capsys)
    assert code == 0 and len(first) > 600  # a March of hours (minus the fake's null hours)
    calls = len(fake.calls("consumption"))
    caplog.clear()
    code, again = fetch(fake, tmp_path / "state", capsys)
    assert code == 0
    assert len(fake.calls("consumption")) == calls  # from the ledger, not asked again
    assert [(r.ts_ms, r.interval_energy_wh) for r in again] == \
        [(r.ts_ms, r.interval_energy_wh) for r in first]
    # the values are the fake's, hour by hour (not just "the same as before")
    sample = again[100]
    assert sample.interval_energy_wh == pytest.approx(value_kwh(CUPS_A + "0F", sample.ts_ms)
                                                      * 1000)
    text = caplog.text
    assert "unchanged" in text and f"the {len(first)} stored readings are shown again" in text


def test_deferred_month_says_why_and_when_and_fails(fake, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    fake.script("get-consumption-data-v2", "500")  # the retry then meets the fake's 24 h rule
    code, readings = fetch(fake, tmp_path / "state", capsys, month="2025-04")
    assert code == 1 and readings == []
    calls = len(fake.calls("consumption"))
    caplog.clear()
    code, readings = fetch(fake, tmp_path / "state", capsys, month="2025-04")
    assert code == 1 and readings == []
    assert len(fake.calls("consumption")) == calls  # nothing sent: the 24 h rule
    line = next(r.getMessage() for r in caplog.records if "not asked" in r.getMessage())
    assert "failed at" in line and "HTTP 429" in line  # the recorded error, verbatim
    failed_at, retry_at = (datetime.strptime(t, "%Y-%m-%d %H:%M UTC") for t in
                           re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", line))
    assert (retry_at - failed_at).total_seconds() == 24 * 3600
    assert "not fetched now" in caplog.text


def _download(folder: Path, name: str = "consumo.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["CUPS;Fecha;Hora;Consumo_kWh;Metodo_obtencion;Energia_vertida_kWh"]
    lines += [f"{CUPS_A};2025/05/06;{h:02d}:00;{h},25;Real;" for h in range(1, 25)]
    path = folder / name
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.mark.stack
def test_import_remembers_files_by_content(kafka_settings, registry_file, tmp_path, caplog,
                                           monkeypatch):
    from test_datadis_kafka import readings_of

    monkeypatch.setenv("IOE_TOPIC_PREFIX", kafka_settings.topic_prefix)
    caplog.set_level(logging.INFO)
    folder = tmp_path / "downloads"
    _download(folder)
    base = ["datadis", "--state-dir", str(tmp_path / "state"), "import", "--registry",
            str(registry_file)]
    assert main(base + [str(folder)]) == 0
    first = readings_of(kafka_settings)
    assert len(first) == 24
    assert sum(r.interval_energy_wh for r in first) == pytest.approx(
        sum(h + 0.25 for h in range(1, 25)) * 1000)
    assert "datadis import: 1/1 files done" in caplog.text  # plain progress line, no terminal

    shutil.copy(folder / "consumo.csv", folder / "consumo (1).csv")  # the same, renamed
    caplog.clear()
    assert main(base + [str(folder)]) == 0
    assert len(readings_of(kafka_settings)) == 24  # nothing published again
    skips = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()
             and "--force" in r.getMessage()]
    assert len(skips) == 2 and all("as consumo.csv, 24 readings" in m for m in skips)

    caplog.clear()
    assert main(base + ["--force", str(folder / "consumo.csv")]) == 0
    assert len(readings_of(kafka_settings)) == 48  # redone on request


def test_print_import_does_not_mark_files_imported(tmp_path, capsys):
    folder = tmp_path / "d"
    _download(folder)
    state = ["datadis", "--state-dir", str(tmp_path / "state"), "import"]
    for _ in range(2):  # printing twice prints twice: nothing was published
        assert main(state + [str(folder), "--print"]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 24


class _Tty:
    """A stream that says it is a terminal (what tqdm draws on)."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass


def test_progress_bar_on_a_terminal_lines_otherwise(caplog):
    caplog.set_level(logging.INFO)
    tty = _Tty()
    bar = Progress(3, "backfill x", "month", stream=tty)  # type: ignore[arg-type]
    for _ in range(3):
        bar.update()
    bar.close()
    assert "3/3" in tty.text and "\r" in tty.text  # tqdm's redrawn line
    assert "backfill x" not in caplog.text
    import io

    lines = Progress(3, "backfill y", "month", every_s=3600, stream=io.StringIO())
    for _ in range(3):
        lines.update()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["backfill y: 3/3 months done"]  # throttled, but the last one shown
