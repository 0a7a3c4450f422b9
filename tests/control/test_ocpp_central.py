"""The OCPP 1.6J central system on the real stack: a simulated wallbox (the ``ocpp`` library's
client side) over a real websocket, real Kafka with private topics.

Meter values become readings of the registry device; a limit becomes a charging profile with a
duration, read back from the composite schedule; a limit beyond the charger's bounds is refused;
a command for a charger that is not connected expires at its deadline and is never sent when
the charger connects afterwards."""

from __future__ import annotations

import os
import time

import orjson
import pytest
from chargers import SimulatedCharger
from control_helpers import COMMUNITY, make_registry
from kafka import KafkaConsumer, TopicPartition
from ocpp.v16 import call
from websockets.exceptions import InvalidStatus

from control.bus import ResultWatcher, now_ms, send_command
from control.commands import Requester, issue
from control.ocpp.central import CentralSystem
from ioe.kafka import make_producer
from ioe.messages import Command
from ioe.topics import READINGS

pytestmark = pytest.mark.stack

THREE_PHASE = {"id": "ev-3p", "role": "consumption", "member": "m2",
               "protocol": {"type": "ocpp", "charge_point": "CP-3P", "phases": 3,
                            "min_current_a": 6, "max_current_a": 32, "controllable": True}}


def keyed(unique_id: str) -> dict:
    return {"id": "ev-key", "role": "consumption", "member": "m2",
            "protocol": {"type": "ocpp", "charge_point": "CP-KEY",
                         "auth_key_env": f"IOE_TEST_OCPP_KEY_{unique_id}"}}


@pytest.fixture
def bench(kafka_settings, unique_id):
    registry = make_registry(extra=[THREE_PHASE, keyed(unique_id)])
    central = CentralSystem(kafka_settings, registry, host="127.0.0.1", port=0, heartbeat_s=30,
                            timeout_s=5, group_id=f"ocpp-{unique_id}").start()
    producer = make_producer(kafka_settings)
    chargers: list[SimulatedCharger] = []

    def charger(cp_id: str, **kwargs) -> SimulatedCharger:
        sim = SimulatedCharger(cp_id, **kwargs)
        chargers.append(sim)
        return sim

    try:
        yield registry, central, producer, charger, f"ws://127.0.0.1:{central.port}/ocpp"
    finally:
        for sim in chargers:
            sim.close()
        producer.close(timeout=5)
        central.stop()


def issue_as_operator(registry, device, key, value, ttl_s=10.0, revert_s=None):
    return issue(registry, Requester.parse("operator:ana"), device, key, value,
                 reason="test", now_ms=now_ms(), ttl_s=ttl_s, revert_s=revert_s)


def roundtrip(settings, producer, command: Command, grace_ms=3000):
    watcher = ResultWatcher(settings)
    try:
        send_command(producer, settings, command)
        found = watcher.wait({command.command_id}, command.deadline_ms + grace_ms)
    finally:
        watcher.close()
    return found.get(command.command_id)


def readings_of(settings, device_id, count, timeout_s=20.0) -> list[tuple[bytes, dict]]:
    """(key, reading) of ``device_id`` on the private ``ioe.readings``, in offset order."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                             enable_auto_commit=False)
    topic = settings.topic(READINGS)
    found: list[tuple[bytes, dict]] = []
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    reading = orjson.loads(record.value)
                    if reading["device_id"] == device_id:
                        found.append((record.key, reading))
        return found
    finally:
        consumer.close()


def test_boot_and_meter_values_become_readings_of_the_registry_device(kafka_settings, bench):
    registry, central, producer, charger, url = bench
    sim = charger("CP-3P", phases=3)
    assert sim.connect(url) == "Accepted"
    assert sim.send(call.Heartbeat()).current_time.endswith("Z")
    t0 = (now_ms() // 1000 - 120) * 1000  # two minutes ago, whole seconds
    start = sim.send(call.StartTransaction(connector_id=1, id_tag="TAG-SECRET",
                                           meter_start=12000, timestamp=_iso(t0)))
    assert start.id_tag_info["status"] == "Accepted" and start.transaction_id >= 1
    sim.send(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
    sim.send(call.MeterValues(connector_id=1, transaction_id=start.transaction_id, meter_value=[
        {"timestamp": _iso(t0 + 60_000), "sampled_value": [
            {"value": "12.345", "measurand": "Energy.Active.Import.Register", "unit": "kWh"},
            {"value": "2300", "measurand": "Power.Active.Import", "unit": "W", "phase": "L1"},
            {"value": "2250", "measurand": "Power.Active.Import", "unit": "W", "phase": "L2"},
            {"value": "2200", "measurand": "Power.Active.Import", "unit": "W", "phase": "L3"},
            {"value": "10.0", "measurand": "Current.Import", "unit": "A", "phase": "L1"},
            {"value": "9.8", "measurand": "Current.Import", "unit": "A", "phase": "L2"},
            {"value": "9.6", "measurand": "Current.Import", "unit": "A", "phase": "L3"},
            {"value": "230", "measurand": "Voltage", "unit": "V", "phase": "L1-N"},
            {"value": "231", "measurand": "Voltage", "unit": "V", "phase": "L2-N"},
            {"value": "232", "measurand": "Voltage", "unit": "V", "phase": "L3-N"},
            {"value": "400", "measurand": "Voltage", "unit": "V", "phase": "L1-L2"},
            {"value": "55", "measurand": "SoC", "unit": "Percent", "location": "EV"}]},
        # the default measurand (energy register) and unit (Wh), a total power in kW
        {"timestamp": _iso(t0 + 120_000), "sampled_value": [
            {"value": "12400"},
            {"value": "6.9", "measurand": "Power.Active.Import", "unit": "kW"}]},
    ]))
    found = readings_of(kafka_settings, "ev-3p", 3)
    assert [key for key, _ in found] == [COMMUNITY.encode()] * 3
    start_reading, first, second = (r for _, r in found)
    assert start_reading == {"v": 1, "device_id": "ev-3p", "community_id": COMMUNITY,
                             "ts_ms": t0, "source": "ocpp", "energy_wh": 12000.0,
                             "status": "Charging", "quality": "measured"}
    # by hand: 12.345 kWh = 12345 Wh; 2300 + 2250 + 2200 = 6750 W; the highest phase current
    # 10.0 A; (230 + 231 + 232) / 3 = 231 V; the line-to-line 400 V and the car's SoC left out
    assert {k: first.get(k) for k in ("ts_ms", "energy_wh", "power_w", "current_a",
                                       "voltage_v", "status")} == {
        "ts_ms": t0 + 60_000, "energy_wh": 12345.0, "power_w": 6750.0, "current_a": 10.0,
        "voltage_v": 231.0, "status": "Charging"}
    assert (second["ts_ms"], second["energy_wh"], second["power_w"]) == (
        t0 + 120_000, 12400.0, 6900.0)
    assert "current_a" not in second and "voltage_v" not in second


def test_an_unknown_charge_point_is_refused_at_the_handshake(bench):
    registry, central, producer, charger, url = bench
    with pytest.raises(InvalidStatus) as refused:
        charger("CP-NOT-IN-REGISTRY").connect(url)
    assert refused.value.response.status_code == 404


def test_a_charger_with_a_key_must_present_it(bench, unique_id):
    """OCPP 1.6 security profile 1: HTTP Basic, user = charge point id, password = its key."""
    registry, central, producer, charger, url = bench
    variable = f"IOE_TEST_OCPP_KEY_{unique_id}"
    with pytest.raises(InvalidStatus) as unset:  # the operator forgot to set the variable
        charger("CP-KEY").connect(url, key="anything")
    assert unset.value.response.status_code == 503
    os.environ[variable] = "s3cret-key-of-the-wallbox"
    try:
        for key in (None, "wrong-key"):
            with pytest.raises(InvalidStatus) as refused:
                charger("CP-KEY").connect(url, key=key)
            assert refused.value.response.status_code == 401
        assert charger("CP-KEY").connect(url, key="s3cret-key-of-the-wallbox") == "Accepted"
    finally:
        del os.environ[variable]


def test_require_auth_refuses_chargers_without_a_key(kafka_settings, unique_id):
    central = CentralSystem(kafka_settings, make_registry(), host="127.0.0.1", port=0,
                            group_id=f"ocpp-auth-{unique_id}", require_auth=True).start()
    sim = SimulatedCharger("CP-1")
    try:
        with pytest.raises(InvalidStatus) as refused:
            sim.connect(f"ws://127.0.0.1:{central.port}/")
        assert refused.value.response.status_code == 403
    finally:
        sim.close()
        central.stop()


def test_a_limit_becomes_a_profile_with_a_duration_and_is_read_back(kafka_settings, bench):
    registry, central, producer, charger, url = bench
    sim = charger("CP-1")
    assert sim.connect(url) == "Accepted"
    issued = issue_as_operator(registry, "ev-1", "ev_current_a", 10, revert_s=120)
    assert issued.status == "sent", issued.refusal
    before = now_ms()
    result = roundtrip(kafka_settings, producer, issued.command)
    assert result is not None
    assert (result.status, result.requested, result.readback, result.executor) == (
        "acknowledged", 10, 10.0, "ocpp-central"), result.detail
    (connector, profile), = [(c, p) for kind, c, p in sim.received
                             if kind == "SetChargingProfile"]
    assert connector == 1
    assert (profile["charging_profile_purpose"], profile["charging_profile_kind"],
            profile["stack_level"]) == ("TxDefaultProfile", "Absolute", 1)
    schedule = profile["charging_schedule"]
    assert schedule["charging_rate_unit"] == "A"
    assert schedule["charging_schedule_period"] == [{"start_period": 0, "limit": 10.0,
                                                     "number_phases": 1}]
    # the duration: revert_s, as the schedule's duration and as the profile's validity
    assert schedule["duration"] == 120
    start = _ms(schedule["start_schedule"])
    assert before - 1000 <= start <= now_ms()
    assert _ms(profile["valid_to"]) - _ms(profile["valid_from"]) == 120_000
    # the read-back came from the charger: it was asked for its composite schedule
    assert ("GetCompositeSchedule", 1, {"duration": 120, "unit": "A"}) in sim.received
    assert result.written[0]["action"] == "SetChargingProfile"
    assert result.written[0]["csChargingProfiles"]["chargingSchedule"]["duration"] == 120
    # a lost link falls back: after the duration the charger holds no limit of ours
    assert sim.limit_at(start + 119_000) == 10.0 and sim.limit_at(start + 120_000) is None

    # a power limit on the same charger: 2300 W on one phase at 230 V is 10 A, read back in W
    power = issue_as_operator(registry, "ev-1", "ev_power_w", 2300)
    result = roundtrip(kafka_settings, producer, power.command)
    assert result is not None and (result.status, result.readback) == ("acknowledged", 2300.0)
    assert sim.set_profiles()[-1]["charging_schedule"]["charging_rate_unit"] == "W"
    assert sim.set_profiles()[-1]["charging_schedule"]["duration"] == 900  # the default
    assert len(sim.profiles) == 1  # the same profile id: replaced, not stacked

    # none removes the profile: the charger is back on its own default
    cleared = issue_as_operator(registry, "ev-1", "ev_current_a", None)
    result = roundtrip(kafka_settings, producer, cleared.command)
    assert result is not None and (result.status, result.readback) == ("acknowledged", None)
    assert sim.profiles == {} and sim.limit_at(now_ms()) is None


def test_limits_beyond_the_chargers_bounds_are_refused(kafka_settings, bench):
    registry, central, producer, charger, url = bench
    for device, key, value, why in (
            ("ev-1", "ev_current_a", 20, "outside [0, 16]"),           # registry max 16 A
            ("ev-1", "ev_current_a", 3, "below ev-1's minimum 6 A"),   # IEC 61851 minimum
            ("ev-3p", "ev_current_a", 40, "outside [0, 32]"),
            ("ev-3p", "ev_power_w", 23_000, "above ev-3p's maximum 22080 W"),  # 32 A·230 V·3
            ("ev-1", "relay", "on", "relay does not apply to ev-1")):
        issued = issue_as_operator(registry, device, key, value)
        assert issued.status == "refused" and why in issued.refusal, issued.refusal
    # a command that bypassed the issuer is refused by the central system: nothing is sent
    sim = charger("CP-1")
    assert sim.connect(url) == "Accepted"
    raw = Command("raw-1", COMMUNITY, "ev-1", "ev_current_a", 4, "operator:ana", "test",
                  now_ms(), now_ms() + 10_000)
    result = roundtrip(kafka_settings, producer, raw)
    assert result is not None and result.status == "failed"
    assert "refused" in result.detail and "minimum 6 A" in result.detail
    assert result.written == [] and sim.set_profiles() == []
    # the same charger still takes a valid limit: pause (0 A)
    pause = issue_as_operator(registry, "ev-1", "ev_current_a", 0)
    result = roundtrip(kafka_settings, producer, pause.command)
    assert result is not None and (result.status, result.readback) == ("acknowledged", 0.0)


def test_a_command_for_a_disconnected_charger_expires_and_is_never_sent_late(kafka_settings,
                                                                              bench):
    registry, central, producer, charger, url = bench
    sim = charger("CP-1")
    assert sim.connect(url) == "Accepted"
    sim.disconnect()  # the wallbox loses its link
    late = issue_as_operator(registry, "ev-1", "ev_current_a", 8, ttl_s=3)
    result = roundtrip(kafka_settings, producer, late.command)
    assert result is not None and result.status == "expired", result
    assert result.executed_at_ms >= late.command.deadline_ms  # at its deadline, not before
    assert "not connected" in result.detail and result.written == []

    # a command that may still run waits for the charger, and runs once it is back
    waiting = issue_as_operator(registry, "ev-1", "ev_current_a", 12, ttl_s=30)
    watcher = ResultWatcher(kafka_settings)
    try:
        send_command(producer, kafka_settings, waiting.command)
        time.sleep(1.5)  # the central system holds it: the charger is away
        assert sim.set_profiles() == []
        assert sim.connect(url) == "Accepted"
        found = watcher.wait({waiting.command.command_id}, now_ms() + 15_000)
    finally:
        watcher.close()
    result = found[waiting.command.command_id]
    assert (result.status, result.readback) == ("acknowledged", 12.0), result.detail
    time.sleep(1.0)
    # the expired 8 A never reached the charger, before or after it reconnected
    limits = [p["charging_schedule"]["charging_schedule_period"][0]["limit"]
              for p in sim.set_profiles()]
    assert limits == [12.0]


def _iso(ts_ms: int) -> str:
    from control.ocpp.limits import iso

    return iso(ts_ms)


def _ms(text: str) -> int:
    from control.ocpp.limits import parse_time

    return parse_time(text)


def test_nothing_is_sent_to_a_charger_before_it_has_spoken(kafka_settings, bench):
    """OCPP: no CALL to a charger before it registered. A charger reconnecting after a
    central restart does not boot again: its first message (a heartbeat) makes it ready."""
    registry, central, producer, charger, url = bench
    sim = charger("CP-1")
    assert sim.connect(url, boot=False) is None  # the websocket only
    issued = issue_as_operator(registry, "ev-1", "ev_current_a", 9, ttl_s=30)
    watcher = ResultWatcher(kafka_settings)
    try:
        send_command(producer, kafka_settings, issued.command)
        time.sleep(1.5)
        assert sim.received == []
        sim.send(call.Heartbeat())
        found = watcher.wait({issued.command.command_id}, now_ms() + 15_000)
    finally:
        watcher.close()
    result = found[issued.command.command_id]
    assert (result.status, result.readback) == ("acknowledged", 9.0), result.detail
