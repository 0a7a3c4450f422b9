"""sync and backfill end to end: fake Datadis → connector → the real Kafka (private topics)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import CUPS_A, CUPS_B, CUPS_C, CUPS_PLANT, NIF, PASSWORD, REGISTRY_YAML, make_cups
from fake_datadis import MADRID, surplus_kwh, value_kwh
from kafka import KafkaConsumer, TopicPartition

from ioe.cli import main
from ioe.reading import Reading
from ioe.settings import ROOT
from ioe.topics import DEADLETTER, READINGS

pytestmark = pytest.mark.stack


def consume(settings, logical: str, idle_ms: int = 3000) -> list:
    topic = settings.topic(logical)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=idle_ms,
                             enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    messages = list(consumer)
    consumer.close()
    return messages


def readings_of(settings) -> list[Reading]:
    return [Reading.from_json(m.value) for m in consume(settings, READINGS)]


@pytest.fixture
def env(kafka_settings, fake, tmp_path, monkeypatch):
    password_file = tmp_path / "datadis.pw"
    password_file.write_text(PASSWORD)
    values = {
        "IOE_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "IOE_DATADIS_USERNAME": NIF,
        "IOE_DATADIS_PASSWORD_FILE": str(password_file),
        "IOE_DATADIS_BASE_URL": fake.url,
        "IOE_DATADIS_STATE_DIR": str(tmp_path / "state"),
        "IOE_DATADIS_TIMEOUT_S": "10",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def hours(start_ms: int, end_ms: int, nulls: bool = False) -> list[int]:
    """Interval ends in (start, end], without the fake's null hours (a second, plain count)."""
    first = start_ms + 3_600_000
    return [t for t in range(first, end_ms + 1, 3_600_000)
            if nulls or (t // 3_600_000) % 97 != 0]


def local_ms(year: int, month: int) -> int:
    return int(datetime(year, month, 1, tzinfo=MADRID).timestamp() * 1000)


def test_sync_publishes_every_registry_cups_and_is_idempotent(fake, env, kafka_settings,
                                                              registry_file, config_file):
    now = time.time()
    fake.state.data_until_ms = int((now - 2 * 86400) // 3600 * 3600 * 1000)
    args = ["datadis", "--config", str(config_file), "sync", "--registry", str(registry_file)]
    assert main(args) == 0
    messages = consume(kafka_settings, READINGS)
    assert {m.key for m in messages} == {b"ce-test"}
    readings = [Reading.from_json(m.value) for m in messages]
    local_now = datetime.fromtimestamp(now, UTC).astimezone(MADRID)
    prev = (local_now.year, local_now.month - 1) if local_now.month > 1 else (
        local_now.year - 1, 12)
    expected_ends = hours(local_ms(*prev), fake.state.data_until_ms)
    by_device: dict[str, dict[int, Reading]] = {}
    for r in readings:
        assert r.community_id == "ce-test" and r.source == "datadis" and r.interval_s == 3600
        assert r.ts_ms not in by_device.setdefault(r.device_id, {}), "duplicate reading"
        by_device[r.device_id][r.ts_ms] = r
    spelled = {CUPS_A: CUPS_A + "0F", CUPS_B: CUPS_B, CUPS_C: CUPS_C + "0F",
               CUPS_PLANT: CUPS_PLANT + "1F"}
    assert set(by_device) == {f"datadis:{c}" for c in spelled}
    for cups, datadis_cups in spelled.items():
        got = by_device[f"datadis:{cups}"]
        if cups == CUPS_PLANT:  # a null consumption with a known surplus still makes a reading
            assert sorted(got) == hours(local_ms(*prev), fake.state.data_until_ms, nulls=True)
            continue
        assert sorted(got) == expected_ends, cups
        sample = expected_ends[len(expected_ends) // 2]
        assert got[sample].interval_energy_wh == pytest.approx(
            value_kwh(datadis_cups, sample) * 1000)
    plant = by_device[f"datadis:{CUPS_PLANT}"]
    assert plant[expected_ends[5]].interval_energy_wh == pytest.approx(
        value_kwh(CUPS_PLANT + "1F", expected_ends[5]) * 1000)
    assert all(r.interval_energy_returned_wh == pytest.approx(surplus_kwh("", t) * 1000)
               for t, r in plant.items())
    assert all(r.interval_energy_returned_wh is None
               for r in by_device[f"datadis:{CUPS_A}"].values())
    assert consume(kafka_settings, DEADLETTER, idle_ms=1000) == []
    # the member who authorized the account was fetched with authorizedNif
    c_calls = [c for c in fake.calls("get-consumption") if c.query["cups"] == CUPS_C + "0F"]
    assert c_calls and all(c.query.get("authorizedNif") for c in c_calls)

    # a second run the same day: nothing asked again, nothing published again
    calls_before = len(fake.calls("get-consumption"))
    assert main(args) == 0
    assert len(fake.calls("get-consumption")) == calls_before
    assert len(consume(kafka_settings, READINGS)) == len(messages)
    assert fake.calls(status=429) == []


def test_backfill_resumes_after_the_query_budget(fake, env, kafka_settings, registry_file):
    base = ["datadis", "backfill", "--registry", str(registry_file), "--year", "2025",
            "--cups", CUPS_A, "--no-progress"]
    metrics_file = Path(env["IOE_DATADIS_STATE_DIR"]).parent / "datadis.prom"
    assert main(base + ["--max-queries", "4", "--metrics-file", str(metrics_file)]) == 0
    # get-supplies + 3 months; the counters were written for node_exporter
    assert "ioe_datadis_readings_total" in metrics_file.read_text()
    first = [c.query["startDate"] for c in fake.calls("get-consumption")]
    assert first == ["2025/01", "2025/02", "2025/03"]
    assert main(base) == 0
    asked = [c.query["startDate"] for c in fake.calls("get-consumption")]
    assert asked == [f"2025/{m:02d}" for m in range(1, 13)]  # each month exactly once
    assert fake.calls(status=429) == []
    readings = readings_of(kafka_settings)
    assert sorted(r.ts_ms for r in readings) == hours(local_ms(2025, 1), local_ms(2026, 1))
    # and a third run has nothing left to do
    assert main(base) == 0
    assert len(fake.calls("get-consumption")) == 12


def test_backfill_resumes_from_its_checkpoint_after_sigkill(fake, env, kafka_settings,
                                                            registry_file):
    fake.state.delay_s = 0.4
    command = [sys.executable, "-m", "ioe.cli", "datadis", "backfill", "--registry",
               str(registry_file), "--year", "2025", "--cups", CUPS_A, "--no-progress"]
    proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(fake.calls("get-consumption")) < 5:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "backfill did not get to the 5th month"
            time.sleep(0.05)
        proc.kill()  # SIGKILL while month 5 is being answered
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -9
    fake.state.delay_s = 0.0
    assert main(["datadis", "backfill", "--registry", str(registry_file), "--year", "2025",
                 "--cups", CUPS_A, "--no-progress"]) == 0
    asked = [c.query["startDate"] for c in fake.calls("get-consumption")]
    # months 1-4 were checkpointed before the kill and not asked again; month 5 was asked
    # (the call counts for the 24 h rule) so it waits for tomorrow instead of earning a 429
    assert asked == [f"2025/{m:02d}" for m in range(1, 13)]
    assert fake.calls(status=429) == []
    months = {datetime.fromtimestamp((r.ts_ms - 1) / 1000, UTC).astimezone(MADRID).month
              for r in readings_of(kafka_settings)}
    assert months == set(range(1, 13)) - {5}


def test_sync_without_credentials_fails_cleanly(kafka_settings, registry_file, tmp_path,
                                                monkeypatch):
    for name in ("IOE_DATADIS_USERNAME", "IOE_DATADIS_PASSWORD", "IOE_DATADIS_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IOE_TOPIC_PREFIX", kafka_settings.topic_prefix)
    monkeypatch.setenv("IOE_DATADIS_STATE_DIR", str(tmp_path / "s"))
    assert main(["datadis", "sync", "--registry", str(registry_file)]) == 1


def test_unknown_supply_goes_to_the_dead_letter_topic(fake, env, kafka_settings, tmp_path):
    registry = Path(tmp_path / "r.yaml")

    stranger = make_cups(999)
    registry.write_text(REGISTRY_YAML.replace(CUPS_B, stranger))
    assert main(["datadis", "backfill", "--registry", str(registry), "--year", "2025",
                 "--cups", stranger, "--no-progress"]) == 1
    letters = consume(kafka_settings, DEADLETTER)
    assert len(letters) == 1 and b"unknown_device" in letters[0].value
    assert letters[0].key == b"datadis"


def test_fetch_without_print_publishes_to_kafka(fake, env, kafka_settings, registry_file):
    assert main(["datadis", "fetch", "--cups", CUPS_B, "--from", "2025-10", "--to", "2025-10",
                 "--registry", str(registry_file), "--username", NIF]) == 0
    messages = consume(kafka_settings, READINGS)
    readings = [Reading.from_json(m.value) for m in messages]
    assert {m.key for m in messages} == {b"ce-test"}
    assert {r.device_id for r in readings} == {f"datadis:{CUPS_B}"}
    assert {r.community_id for r in readings} == {"ce-test"}
    assert sorted(r.ts_ms for r in readings) == hours(local_ms(2025, 10), local_ms(2025, 11))


def test_sync_with_refused_credentials_stops_early(fake, env, kafka_settings, registry_file,
                                                   tmp_path, monkeypatch):
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("not-the-password")
    monkeypatch.setenv("IOE_DATADIS_PASSWORD_FILE", str(wrong))
    assert main(["datadis", "sync", "--registry", str(registry_file)]) == 1
    assert fake.calls("get-consumption") == []
    assert len(fake.calls("/login")) <= 2
    letters = consume(kafka_settings, DEADLETTER)
    assert letters and all(b"datadis_error" in m.value for m in letters)
    assert all(PASSWORD.encode() not in m.value and b"not-the-password" not in m.value
               for m in letters)


def test_sync_resumes_from_its_checkpoints_after_sigkill(fake, env, kafka_settings,
                                                         registry_file, config_file):
    fake.state.data_until_ms = int((time.time() - 2 * 86400) // 3600 * 3600 * 1000)
    fake.state.delay_s = 0.4
    command = [sys.executable, "-m", "ioe.cli", "datadis", "--config", str(config_file),
               "sync", "--registry", str(registry_file)]
    proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(fake.calls("get-consumption")) < 3:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.kill()  # SIGKILL while the third month query is being answered
    finally:
        proc.kill()
        proc.wait(timeout=30)
    in_flight = fake.calls("get-consumption")[2].query
    fake.state.delay_s = 0.0
    assert main(["datadis", "--config", str(config_file), "sync", "--registry",
                 str(registry_file)]) == 0
    asked = [(c.query["cups"], c.query["startDate"]) for c in fake.calls("get-consumption")]
    assert len(asked) == len(set(asked)) == 8  # 4 CUPS x 2 months, none asked twice
    assert fake.calls(status=429) == []
    published = {(r.device_id, datetime.fromtimestamp((r.ts_ms - 1) / 1000, UTC)
                  .astimezone(MADRID).strftime("%Y/%m")) for r in readings_of(kafka_settings)}
    spelled = {CUPS_A + "0F": CUPS_A, CUPS_B: CUPS_B, CUPS_C + "0F": CUPS_C,
               CUPS_PLANT + "1F": CUPS_PLANT}
    expected = {(f"datadis:{spelled[c]}", month) for c, month in asked}
    missing = (f"datadis:{spelled[in_flight['cups']]}", in_flight["startDate"])
    assert published == expected - {missing}


def test_no_checkpoint_unless_kafka_acknowledged(fake, kafka_settings, tmp_path):
    from connectors.datadis.client import DatadisClient
    from connectors.datadis.connector import DatadisConnector, KafkaSink, Target
    from connectors.datadis.ledger import Ledger
    from ioe.kafka import make_producer

    ledger = Ledger(tmp_path / "state")
    target = Target(CUPS_A, "ce-test")
    client = DatadisClient(username=NIF, password=PASSWORD, ledger=ledger, base_url=fake.url)
    # a real producer whose requests Kafka cannot take (records larger than allowed)
    refusing = KafkaSink(kafka_settings, make_producer(kafka_settings, max_request_size=64))
    connector = DatadisConnector(client, ledger, refusing)
    resolved = connector.resolve([target])
    report = connector.run([(resolved[0], [(2025, 7)])])
    refusing.close()
    assert report.months_failed == 1 and ledger.month(CUPS_A, 0, "2025-07") is None
    # the next run publishes the cached answer (no second query: that would be a 429)
    sink = KafkaSink(kafka_settings)
    report = DatadisConnector(client, ledger, sink).run([(resolved[0], [(2025, 7)])])
    sink.close()
    assert report.months_published == 1
    assert ledger.month(CUPS_A, 0, "2025-07").rows == len(hours(local_ms(2025, 7),
                                                                local_ms(2025, 8)))
    assert len(fake.calls("get-consumption")) == 1
    assert len(readings_of(kafka_settings)) == len(hours(local_ms(2025, 7), local_ms(2025, 8)))
    ledger.close()
