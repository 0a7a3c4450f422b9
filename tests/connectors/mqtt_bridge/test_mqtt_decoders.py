"""Each decoder against payloads in the documented formats, values worked out by hand.

Units are the point: Wh stays Wh, kWh is multiplied by 1000, watt-minutes are never counters.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from mqtt_helpers import decode

from connectors.mqtt_bridge.decoders import DecodeContext, DecodeError
from connectors.mqtt_bridge.decoders.json_map import JsonMapConfigError, parse_map


def utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


RX = utc_ms("2024-05-20T10:00:00")  # receipt time used when the device gives none


def only(decoded):  # noqa: ANN001, ANN201 - test helper
    assert decoded.ignored is None, decoded
    assert len(decoded.readings) == 1, decoded
    return decoded.readings[0]


# -- Shelly Gen1 --------------------------------------------------------------------------------
class TestShellyGen1:
    def test_total_is_wh_and_keeps_its_value(self) -> None:
        r = only(decode("shellies/shellyem-B6132F285BA7/emeter/1/total", "123456.7", RX))
        assert r.device_id == "shellyem-B6132F285BA7:1"
        assert r.energy_wh == 123456.7  # Wh already: not ×1000, not ÷60
        assert r.ts_ms == RX and r.source == "shelly-gen1"
        assert r.power_w is None

    def test_total_returned(self) -> None:
        r = only(decode("shellies/shellyem3-X/emeter/2/total_returned", "42.5", RX))
        assert (r.device_id, r.energy_returned_wh) == ("shellyem3-X:2", 42.5)

    def test_negative_power_is_export(self) -> None:
        r = only(decode("shellies/shellyem3-X/emeter/0/power", "-1234.56", RX))
        assert r.power_w == -1234.56

    @pytest.mark.parametrize("quantity,payload,field,value", [
        ("voltage", "231.20", "voltage_v", 231.2),
        ("current", "5.40", "current_a", 5.4),
        ("pf", "0.95", "power_factor", 0.95),
    ])
    def test_other_quantities(self, quantity: str, payload: str, field: str,
                              value: float) -> None:
        r = only(decode(f"shellies/shellyem3-X/emeter/0/{quantity}", payload, RX))
        assert getattr(r, field) == value

    @pytest.mark.parametrize("quantity", ["energy", "returned_energy", "reactive_power"])
    def test_watt_minutes_are_never_counters(self, quantity: str) -> None:
        decoded = decode(f"shellies/shellyem3-X/emeter/0/{quantity}", "6000", RX)
        assert decoded.readings == () and decoded.ignored == "unused_field"

    def test_online_is_availability(self) -> None:
        assert decode("shellies/shellyem3-X/online", "false", RX).ignored == "availability"

    def test_plug_relay_power(self) -> None:
        r = only(decode("shellies/shellyplug-s-1/relay/0/power", "57.3", RX))
        assert (r.device_id, r.power_w) == ("shellyplug-s-1:0", 57.3)

    @pytest.mark.parametrize("payload", ["abc", "", "nan", "inf", "1,5"])
    def test_not_a_number(self, payload: str) -> None:
        with pytest.raises(DecodeError):
            decode("shellies/shellyem3-X/emeter/0/power", payload, RX)


# -- Shelly Gen2 --------------------------------------------------------------------------------
PRO3EM = "shellypro3em-0ee8d091881a"


def notify(ts: float, **components: object) -> dict[str, object]:
    return {"src": PRO3EM, "dst": f"{PRO3EM}/events", "method": "NotifyStatus",
            "params": {"ts": ts, **{k.replace("_", ":"): v for k, v in components.items()}}}


class TestShellyGen2:
    def test_three_phase_with_unconnected_phase_and_partial_frames(self) -> None:
        ctx = DecodeContext()
        full = notify(1716200000.12, em_0={
            "id": 0, "a_current": 4.35, "a_voltage": 230.0, "a_act_power": 1000.5,
            "a_freq": 50.0, "b_current": 2.2, "b_voltage": 232.0, "b_act_power": 500.0,
            "b_freq": 50.0, "c_current": 0.0, "c_voltage": 0.0, "c_act_power": 0.0,
            "c_freq": 4294.9, "total_current": 6.55, "total_act_power": 1500.5,
            "total_aprt_power": 1600.0, "n_current": None})
        r = only(decode(f"{PRO3EM}/events/rpc", full, RX, ctx))
        assert r.device_id == f"{PRO3EM}:0" and r.source == "shelly-gen2"
        assert r.ts_ms == 1716200000120
        assert r.power_w == 1500.5 and r.current_a == 6.55
        assert r.voltage_v == pytest.approx((230.0 + 232.0) / 2)  # phase C not connected
        assert r.frequency_hz == 50.0  # the absurd 4294.9 Hz of phase C is not used
        # partial frame: only the changed total; voltage and current come from the merged state
        r2 = only(decode(f"{PRO3EM}/events/rpc",
                         notify(1716200001.5, em_0={"id": 0, "total_act_power": -2100.0}),
                         RX, ctx))
        assert r2.ts_ms == 1716200001500
        assert r2.power_w == -2100.0  # export
        assert r2.voltage_v == pytest.approx(231.0) and r2.current_a == 6.55
        # an energy frame does not re-stamp the power it did not carry
        r3 = only(decode(f"{PRO3EM}/events/rpc", notify(
            1716200060.0, emdata_0={"id": 0, "total_act": 123456.78, "total_act_ret": 9876.5}),
            RX, ctx))
        assert (r3.energy_wh, r3.energy_returned_wh) == (123456.78, 9876.5)  # Wh
        assert r3.power_w is None and r3.ts_ms == 1716200060000

    def test_partial_frame_from_empty_state(self) -> None:
        r = only(decode(f"{PRO3EM}/events/rpc",
                        notify(1716200000, em_0={"id": 0, "total_act_power": 12.5}), RX))
        assert r.power_w == 12.5 and r.voltage_v is None

    def test_monophase_em1_and_em1data_merge_into_one_device(self) -> None:
        prefix = "shellyproem50-08f9e0e67204"
        frame = {"method": "NotifyStatus", "params": {
            "ts": 1707930973.0,
            "em1:1": {"id": 1, "current": 22.78, "voltage": 224.6, "act_power": 5080.3,
                      "aprt_power": 5142.4, "pf": 0.99, "freq": 50.0},
            "em1data:1": {"id": 1, "total_act_energy": 6644.9, "total_act_ret_energy": 2595.26},
        }}
        r = only(decode(f"{prefix}/events/rpc", frame, RX))
        assert r.device_id == f"{prefix}:1"
        assert (r.power_w, r.energy_wh, r.energy_returned_wh) == (5080.3, 6644.9, 2595.26)
        assert (r.voltage_v, r.current_a, r.frequency_hz, r.power_factor) == (
            224.6, 22.78, 50.0, 0.99)

    def test_status_topic_uses_receipt_time(self) -> None:
        r = only(decode("shellyemg3-abc/status/em1:0",
                        {"id": 0, "act_power": -310.0, "voltage": 229.9, "current": 1.5,
                         "freq": 49.98, "pf": -0.9}, RX))
        assert (r.device_id, r.ts_ms, r.power_w) == ("shellyemg3-abc:0", RX, -310.0)

    def test_nulls_and_unconnected_channel_give_no_reading(self) -> None:
        decoded = decode("shellyemg3-abc/status/em1:1",
                         {"id": 1, "act_power": None, "voltage": 0.0, "freq": 0.0}, RX)
        assert decoded.readings == () and decoded.ignored == "no_measurement"

    def test_full_status_and_other_components(self) -> None:
        frame = {"method": "NotifyFullStatus", "params": {
            "ts": 1716200000.0, "sys": {"mac": "X"}, "wifi": {"rssi": -60},
            "emdata:0": {"id": 0, "total_act": 10.0, "total_act_ret": 0.0}}}
        r = only(decode(f"{PRO3EM}/events/rpc", frame, RX))
        assert r.energy_wh == 10.0 and r.energy_returned_wh == 0.0

    def test_events_and_availability_are_not_readings(self) -> None:
        event = {"method": "NotifyEvent", "params": {"ts": 1, "events": []}}
        assert decode(f"{PRO3EM}/events/rpc", event, RX).ignored == "not_a_reading"
        assert decode(f"{PRO3EM}/online", "true", RX).ignored == "availability"
        only_sys = notify(1716200000, sys={"uptime": 5})
        assert decode(f"{PRO3EM}/events/rpc", only_sys, RX).ignored == "no_measurement"

    @pytest.mark.parametrize("payload", [
        b"{", b"[]", b'{"method":"NotifyStatus","params":3}',
        b'{"method":"NotifyStatus","params":{"ts":1,"em:0":5}}',
        b'{"method":"NotifyStatus","params":{"ts":1,"em:x":{}}}',
        b'{"method":"NotifyStatus","params":{"ts":"soon","em:0":{}}}',
        b'{"method":"NotifyStatus","params":{"ts":1,"em:0":{"total_act_power":"9"}}}',
    ])
    def test_malformed(self, payload: bytes) -> None:
        with pytest.raises(DecodeError):
            decode(f"{PRO3EM}/events/rpc", payload, RX)


# -- Tasmota ------------------------------------------------------------------------------------
def sensor(time: str | None, **energy: object) -> dict[str, object]:
    doc: dict[str, object] = {"ENERGY": {"TotalStartTime": "2023-01-01T00:00:00", **energy}}
    if time is not None:
        doc["Time"] = time
    return doc


class TestTasmota:
    def test_single_phase_kwh_to_wh_and_winter_time(self) -> None:
        r = only(decode("tele/tasmota_5A3B2C/SENSOR", sensor(
            "2024-01-15T12:00:00", Total=1234.567, Yesterday=3.2, Today=1.1, Power=850,
            ApparentPower=900, ReactivePower=295, Factor=0.94, Voltage=229, Current=3.93),
            RX))
        assert r.device_id == "tasmota_5A3B2C" and r.source == "tasmota"
        assert r.ts_ms == utc_ms("2024-01-15T11:00:00")  # CET = UTC+1
        assert r.energy_wh == pytest.approx(1234567.0)  # kWh × 1000; Today/Yesterday unused
        assert (r.power_w, r.voltage_v, r.current_a, r.power_factor) == (850, 229, 3.93, 0.94)

    def test_three_phase_arrays(self) -> None:
        r = only(decode("tele/sdm630/SENSOR", sensor(
            "2024-07-01T12:00:00", Total=[1.0, 2.0, 3.5], Power=[1000, 2000, -500],
            Voltage=[230, 231, 232], Current=[4.35, 8.7, 2.2], Factor=[0.9, 0.8, 1.0],
            ExportActive=[0.1, 0.2, 0.3]), RX))
        assert r.ts_ms == utc_ms("2024-07-01T10:00:00")  # CEST = UTC+2
        assert r.power_w == 2500  # 1000 + 2000 − 500
        assert r.energy_wh == pytest.approx(6500.0)
        assert r.energy_returned_wh == pytest.approx(600.0)
        assert r.voltage_v == pytest.approx(231.0)
        assert r.current_a == pytest.approx(15.25)
        assert r.power_factor is None  # no meaningful sum of per-phase factors

    def test_negative_power_and_nulls(self) -> None:
        r = only(decode("tele/pv/SENSOR", sensor("2024-01-15T12:00:00", Power=-750.0,
                                                   Total=None, Voltage=None), RX))
        assert r.power_w == -750.0 and r.energy_wh is None and r.voltage_v is None

    @pytest.mark.parametrize("local,received,expected", [
        # spring forward 2024-03-31: 02:00 CET → 03:00 CEST
        ("2024-03-31T01:59:59", "2024-03-31T01:00:00", "2024-03-31T00:59:59"),
        ("2024-03-31T03:00:00", "2024-03-31T01:00:05", "2024-03-31T01:00:00"),
        # fall back 2024-10-27: 03:00 CEST → 02:00 CET, so 02:30 happens twice
        ("2024-10-27T01:59:59", "2024-10-27T00:00:00", "2024-10-26T23:59:59"),
        ("2024-10-27T02:30:00", "2024-10-27T00:30:05", "2024-10-27T00:30:00"),  # 1st, CEST
        ("2024-10-27T02:30:00", "2024-10-27T01:30:05", "2024-10-27T01:30:00"),  # 2nd, CET
        ("2024-10-27T03:00:00", "2024-10-27T02:00:05", "2024-10-27T02:00:00"),
    ])
    def test_local_time_across_both_dst_changes(self, local: str, received: str,
                                                 expected: str) -> None:
        r = only(decode("tele/t1/SENSOR", sensor(local, Power=1), utc_ms(received)))
        assert r.ts_ms == utc_ms(expected)

    def test_non_existent_local_time_is_refused(self) -> None:
        with pytest.raises(DecodeError, match="does not exist"):
            decode("tele/t1/SENSOR", sensor("2024-03-31T02:30:00", Power=1),
                   utc_ms("2024-03-31T01:30:00"))

    def test_configured_zone_and_explicit_offset(self) -> None:
        canary = DecodeContext(timezone=ZoneInfo("Atlantic/Canary"))
        r = only(decode("tele/t1/SENSOR", sensor("2024-07-01T12:00:00", Power=1), RX, canary))
        assert r.ts_ms == utc_ms("2024-07-01T11:00:00")  # WEST = UTC+1
        r = only(decode("tele/t1/SENSOR", sensor("2024-07-01T12:00:00+02:00", Power=1), RX))
        assert r.ts_ms == utc_ms("2024-07-01T10:00:00")

    def test_status10_and_missing_time(self) -> None:
        r = only(decode("stat/t1/STATUS10", {"StatusSNS": sensor(None, Total=0.5)}, RX))
        assert (r.energy_wh, r.ts_ms) == (500.0, RX)

    def test_lwt_state_and_non_energy_sensors(self) -> None:
        assert decode("tele/t1/LWT", "Offline", RX).ignored == "availability"
        assert decode("tele/t1/STATE", {"Uptime": "1T"}, RX).ignored == "not_a_reading"
        temp = {"Time": "2024-01-15T12:00:00", "DS18B20": {"Temperature": 21}}
        assert decode("tele/t1/SENSOR", temp, RX).ignored == "no_measurement"

    @pytest.mark.parametrize("payload", [
        b"Online", b'{"Time": 5, "ENERGY": {"Power": 1}}', b'{"ENERGY": [1]}',
        b'{"Time": "yesterday", "ENERGY": {"Power": 1}}', b'{"ENERGY": {"Power": "1"}}',
    ])
    def test_malformed(self, payload: bytes) -> None:
        with pytest.raises(DecodeError):
            decode("tele/t1/SENSOR", payload, RX)


# -- emonhub ------------------------------------------------------------------------------------
class TestEmonhub:
    def test_plain_topics(self) -> None:
        ctx = DecodeContext()
        r = only(decode("emon/emontx3/power1", "245", RX, ctx))
        assert (r.device_id, r.power_w, r.ts_ms) == ("emontx3:1", 245.0, RX)
        r = only(decode("emon/emontx3/E2", "123456", RX, ctx))
        assert (r.device_id, r.energy_wh) == ("emontx3:2", 123456.0)  # Wh
        r = only(decode("emon/emontx3/P6", "-80.5", RX, ctx))
        assert (r.device_id, r.power_w) == ("emontx3:6", -80.5)
        volts = decode("emon/emontx3/vrms", "240.5", RX, ctx)
        assert sorted((v.device_id, v.voltage_v) for v in volts.readings) == [
            ("emontx3:1", 240.5), ("emontx3:2", 240.5), ("emontx3:6", 240.5)]
        assert decode("emon/emontx3/temp1", "21.5", RX, ctx).ignored == "unused_field"
        assert decode("emon/other/Vrms", "240", RX, ctx).ignored == "no_measurement"

    def test_json_variant(self) -> None:
        doc = {"time": 1700000000, "P1": 100, "P2": -50.5, "P3": None, "E1": 5000,
               "vrms": 239.1, "T1": 20.0, "pulse": 3}
        decoded = decode("emon/emonpi", doc, RX)
        by_id = {r.device_id: r for r in decoded.readings}
        assert set(by_id) == {"emonpi:1", "emonpi:2"}
        assert (by_id["emonpi:1"].power_w, by_id["emonpi:1"].energy_wh) == (100.0, 5000.0)
        assert by_id["emonpi:2"].power_w == -50.5
        assert all(r.voltage_v == 239.1 and r.ts_ms == 1700000000000 for r in by_id.values())

    @pytest.mark.parametrize("topic,payload", [
        ("emon/emontx3/power1", "x"), ("emon/emonpi", "[1]"), ("emon/emonpi", '{"P1": "x"}'),
        ("emon//power1", "1"), ("emon/a/b/c", "1"),
    ])
    def test_malformed(self, topic: str, payload: str) -> None:
        with pytest.raises(DecodeError):
            decode(topic, payload, RX)


# -- Zigbee2MQTT --------------------------------------------------------------------------------
class TestZigbee2mqtt:
    def test_plug_kwh_to_wh_extra_keys_ignored(self) -> None:
        r = only(decode("zigbee2mqtt/kitchen/plug", {
            "power": 125.3, "energy": 12.34, "voltage": 229, "current": 0.55, "state": "ON",
            "linkquality": 120, "child_lock": "UNLOCK"}, RX))
        assert r.device_id == "kitchen/plug" and r.source == "zigbee2mqtt"
        assert r.energy_wh == pytest.approx(12340.0)
        assert (r.power_w, r.voltage_v, r.current_a, r.ts_ms) == (125.3, 229, 0.55, RX)

    def test_nulls_and_last_seen(self) -> None:
        r = only(decode("zigbee2mqtt/p1", {"power": None, "energy": 1.5,
                                           "last_seen": "2024-05-01T10:00:00+02:00"}, RX))
        assert (r.power_w, r.energy_wh) == (None, 1500.0)
        assert r.ts_ms == utc_ms("2024-05-01T08:00:00")
        r = only(decode("zigbee2mqtt/p1", {"power": 3, "last_seen": 1714550400000}, RX))
        assert r.ts_ms == 1714550400000

    def test_not_readings(self) -> None:
        assert decode("zigbee2mqtt/p1", {"state": "ON"}, RX).ignored == "no_measurement"
        assert decode("zigbee2mqtt/p1/availability", {"state": "online"},
                      RX).ignored == "availability"
        assert decode("zigbee2mqtt/bridge/state", "online", RX).ignored == "not_a_reading"
        assert decode("zigbee2mqtt/p1/set", {"state": "OFF"}, RX).ignored == "not_a_reading"

    @pytest.mark.parametrize("payload", ['"ON"', '{"power": "5"}', "{",
                                         '{"power": 1, "last_seen": "2024-05-01T10:00:00"}'])
    def test_malformed(self, payload: str) -> None:
        with pytest.raises(DecodeError):
            decode("zigbee2mqtt/p1", payload, RX)


# -- generic JSON mapping -----------------------------------------------------------------------
ACME = {"type": "mqtt", "decoder": "json-map", "topic": "acme/+/meter42",
        "ts": {"path": "t", "format": "ms"},
        "fields": {"power_w": {"path": "data.p", "unit": "kW"},
                   "energy_wh": {"path": "data.e", "unit": "kWh"},
                   "current_a": {"path": "phases.0.i", "unit": "mA"},
                   "voltage_v": "data.u"}}


class TestJsonMap:
    def test_units_paths_and_timestamp(self) -> None:
        ctx = DecodeContext(json_maps=(parse_map("acme-42", ACME),))
        payload = {"t": 1716200000000, "data": {"p": -1.25, "e": 345.678, "u": 231},
                   "phases": [{"i": 5430}]}
        r = only(decode("acme/site1/meter42", payload, RX, ctx))
        assert (r.device_id, r.source, r.ts_ms) == ("acme-42", "json-map", 1716200000000)
        assert r.power_w == -1250.0  # kW → W, sign kept
        assert r.energy_wh == pytest.approx(345678.0)
        assert r.current_a == pytest.approx(5.43)
        assert r.voltage_v == 231

    def test_scale_and_iso_local_time(self) -> None:
        spec = dict(ACME, ts={"path": "when", "format": "iso"},
                    fields={"power_w": {"path": "w", "scale": 0.1}})
        ctx = DecodeContext(json_maps=(parse_map("acme-42", spec),))
        r = only(decode("acme/x/meter42", {"when": "2024-01-15T12:00:00", "w": 1234}, RX, ctx))
        assert r.power_w == pytest.approx(123.4)
        assert r.ts_ms == utc_ms("2024-01-15T11:00:00")

    @pytest.mark.parametrize("bad", [
        {"fields": {"power_w": {"path": "p", "unit": "kWh"}}},
        {"fields": {"temperature": "t"}},
        {"fields": {}},
        {"topic": ""},
        {"ts": {"path": "t", "format": "days"}},
    ])
    def test_config_errors(self, bad: dict[str, object]) -> None:
        with pytest.raises(JsonMapConfigError):
            parse_map("acme-42", dict(ACME, **bad))

    def test_missing_values(self) -> None:
        ctx = DecodeContext(json_maps=(parse_map("acme-42", ACME),))
        assert decode("acme/x/meter42", {"t": 1716200000000}, RX,
                      ctx).ignored == "no_measurement"
        with pytest.raises(DecodeError):
            decode("acme/x/meter42", {"data": {"p": 1}}, RX, ctx)  # ts configured, missing
