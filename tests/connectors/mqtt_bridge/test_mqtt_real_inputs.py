"""Real-world MQTT inputs (issue 16): decoders chosen from the registry and the payload's shape,
Zigbee2MQTT per-attribute output, one rule for implausible auxiliary values, and dead letters
(rate-limited) for topics inside a family that no decoder understands.

Sources of the payload shapes:
* Shelly Gen2 prefix ``shellies/<name>``: Home Assistant configurations in the wild subscribe
  ``shellies/shellyplus1pm-XXXX/status/switch:0`` (gist.github.com/giu1io/
  2b00e2e1ee69de9b1778f5e3324940ce, gist.github.com/arfoll/3094d66ce5ff1e6b4f202579eb80d801);
  the ``switch`` status object (``apower``, ``voltage``, ``current``, ``aenergy.total``) and
  ``NotifyStatus`` frames are those of shelly-api-docs.shelly.cloud (gen2 Switch component,
  General/Notifications).
* Tasmota FullTopic ``%topic%/%prefix%/`` and the ``tele/…/SENSOR`` ``ENERGY`` object:
  tasmota.github.io/docs/MQTT/ (FullTopic) and the Sonoff POW telemetry shown there; the
  ``"Voltage":0`` beside a real power is what a Tasmota without a voltage sensor reports.
* Zigbee2MQTT ``output: attribute_and_json``: zigbee2mqtt.io/guide/configuration/mqtt.html
  (``zigbee2mqtt/my_bulb/state`` ``ON`` beside the JSON state).
"""

from __future__ import annotations

import orjson
import pytest
from mqtt_helpers import COMMUNITY, make_registry

from connectors.mqtt_bridge.bridge import Bridge, BridgeConfig
from connectors.mqtt_bridge.decoders import DecodeContext
from connectors.mqtt_bridge.decoders.base import auxiliary_checked
from connectors.mqtt_bridge.processor import RATE_WINDOW_MS, Processor
from ioe.reading import Reading
from ioe.settings import get_settings
from ioe.topics import DEADLETTER, READINGS

RX = 1716199200000
SWITCH_STATUS = {"id": 0, "source": "init", "output": True, "apower": 47.3, "voltage": 229.8,
                 "current": 0.241, "freq": 50.0, "pf": 0.85,
                 "aenergy": {"total": 11.679, "by_minute": [0.0, 0.0, 0.0],
                             "minute_ts": 1716199140},
                 "temperature": {"tC": 41.3, "tF": 106.3}}


def processor(registry) -> Processor:  # noqa: ANN001
    return Processor(registry, DecodeContext())


def readings(outcome) -> list[Reading]:  # noqa: ANN001
    return [Reading.from_json(r.value) for r in outcome.records if r.topic == READINGS]


def dead(outcome) -> list[dict]:  # noqa: ANN001
    return [orjson.loads(r.value) for r in outcome.records if r.topic == DEADLETTER]


# -- 1. decoder from the registry and the payload's shape -----------------------------------------
def test_gen2_with_a_shellies_prefix_is_read_by_the_gen2_decoder():
    """Without any registry hint: ``shellies/…/status/switch:0`` with a JSON object is Gen2."""
    device = "shellies/shellyplus1pm-a8032ab1c2d4:0"
    p = processor(make_registry([device]))
    outcome = p.process("shellies/shellyplus1pm-a8032ab1c2d4/status/switch:0",
                        orjson.dumps(SWITCH_STATUS), RX)
    assert outcome.decoder == "shelly_gen2"
    (r,) = readings(outcome)
    assert (r.device_id, r.power_w, r.energy_wh, r.voltage_v) == (device, 47.3, 11.679, 229.8)
    notify = {"src": "shellyplus1pm-a8032ab1c2d4", "dst": "shellies/shellyplus1pm-a8032ab1c2d4/events",
              "method": "NotifyStatus",
              "params": {"ts": 1716199260.41, "switch:0": {"id": 0, "apower": 52.0}}}
    outcome = p.process("shellies/shellyplus1pm-a8032ab1c2d4/events/rpc", orjson.dumps(notify), RX)
    (r,) = readings(outcome)
    assert (r.power_w, r.ts_ms) == (52.0, 1716199260410)
    # its availability message stays availability (Gen1 and Gen2 both send "true")
    assert p.process("shellies/shellyplus1pm-a8032ab1c2d4/online", b"true", RX).ignored == (
        "availability")


def test_registry_route_names_decoder_topic_and_id():
    route = {"id": "cocina-plus1pm:0", "role": "consumption", "member": "m1",
             "protocol": {"type": "mqtt", "decoder": "shelly-gen2", "topic": "shellies/plus1pm"}}
    p = processor(make_registry([], [route]))
    outcome = p.process("shellies/plus1pm/status/switch:0", orjson.dumps(SWITCH_STATUS), RX)
    (r,) = readings(outcome)
    assert (r.device_id, r.community_id, r.power_w) == ("cocina-plus1pm:0", COMMUNITY, 47.3)


def test_gen1_id_with_a_slash():
    p = processor(make_registry(["casa/shellyem-B929CC:1"]))
    (r,) = readings(p.process("shellies/casa/shellyem-B929CC/emeter/1/power", b"-210.4", RX))
    assert (r.device_id, r.power_w) == ("casa/shellyem-B929CC:1", -210.4)
    assert p.process("shellies/casa/shellyem-B929CC/relay/0", b"on", RX).ignored == (
        "not_a_reading")


def test_tasmota_custom_full_topic_from_the_registry():
    meter = {"id": "compteur", "role": "grid", "member": "m1",
             "protocol": {"type": "mqtt", "decoder": "tasmota", "topic": "compteur",
                          "full_topic": "%topic%/%prefix%/"}}
    registry = make_registry([], [meter])
    p = processor(registry)
    sensor = {"Time": "2024-05-20T12:00:00", "ENERGY": {
        "TotalStartTime": "2023-11-02T09:12:44", "Total": 1523.456, "Yesterday": 4.1,
        "Today": 2.2, "Power": 1380, "ApparentPower": 1402, "ReactivePower": 246,
        "Factor": 0.98, "Voltage": 231, "Current": 6.07}}
    outcome = p.process("compteur/tele/SENSOR", orjson.dumps(sensor), RX)
    (r,) = readings(outcome)
    # 12:00 local (CEST) = 10:00 UTC; kWh → Wh
    assert (r.device_id, r.ts_ms, r.energy_wh, r.power_w) == (
        "compteur", 1716199200000, pytest.approx(1_523_456.0), 1380.0)
    assert p.process("compteur/tele/LWT", b"Online", RX).ignored == "availability"
    # the bridge subscribes the device's topics although no default filter covers them
    bridge = Bridge(BridgeConfig(settings=get_settings(), registry=registry,
                                 follow_registry=False))
    bridge.processor.refresh_json_maps(registry)
    assert "compteur/+/+" in bridge._filters()
    # without the registry entry the topic is not understood: a dead letter, not silence
    (letter,) = dead(processor(make_registry([])).process("compteur/tele/SENSOR",
                                                          orjson.dumps(sensor), RX))
    assert letter["reason"] == "no_decoder" and letter["origin"] == "compteur/tele/SENSOR"


# -- 2. Zigbee2MQTT per-attribute output --------------------------------------------------------
def test_zigbee2mqtt_attribute_output_is_used_or_recognised_never_an_error():
    p = processor(make_registry(["enchufe_lavadora"]))
    # output: attribute (no JSON state): the bare value is a reading of the known device
    (r,) = readings(p.process("zigbee2mqtt/enchufe_lavadora/energy", b"12.05", RX))
    assert (r.device_id, r.energy_wh) == ("enchufe_lavadora", pytest.approx(12_050.0))
    (r,) = readings(p.process("zigbee2mqtt/enchufe_lavadora/power", b"1890", RX))
    assert r.power_w == 1890.0
    assert p.process("zigbee2mqtt/enchufe_lavadora/state", b"ON", RX).ignored == "unused_field"
    assert p.process("zigbee2mqtt/enchufe_lavadora/linkquality", b"87", RX).ignored == (
        "unused_field")
    # attribute_and_json: once the JSON state is seen, the per-attribute copies are recognised
    state = {"state": "ON", "power": 1890, "energy": 12.05, "voltage": 231, "current": 8.2,
             "linkquality": 87}
    (r,) = readings(p.process("zigbee2mqtt/enchufe_lavadora", orjson.dumps(state), RX))
    assert (r.power_w, r.energy_wh) == (1890.0, pytest.approx(12_050.0))
    storm = [p.process(f"zigbee2mqtt/enchufe_lavadora/{a}", v, RX)
             for a, v in [("energy", b"12.05"), ("power", b"1890"), ("voltage", b"231"),
                          ("current", b"8.2"), ("state", b"ON")]]
    assert [o.ignored for o in storm] == ["attribute_copy"] * 4 + ["unused_field"]
    assert all(not o.records for o in storm)


# -- 7. one rule for implausible auxiliary values -------------------------------------------------
def test_tasmota_zero_volts_beside_power_is_dropped_like_shelly():
    p = processor(make_registry(["tasmota_pow", "shellyplusplugs-x:0"]))
    sensor = {"Time": "2024-05-20T12:00:00",
              "ENERGY": {"Total": 0.5, "Power": 47, "Voltage": 0.00, "Current": 0.2,
                         "Factor": 1.0}}
    (t,) = readings(p.process("tele/tasmota_pow/SENSOR", orjson.dumps(sensor), RX))
    assert (t.power_w, t.voltage_v, t.current_a) == (47.0, None, 0.2)
    plug = dict(SWITCH_STATUS, voltage=4.0, freq=0.0)
    (s,) = readings(p.process("shellyplusplugs-x/status/switch:0", orjson.dumps(plug), RX))
    assert (s.power_w, s.voltage_v, s.frequency_hz) == (47.3, None, None)
    # the rule itself, once: voltage < 20 V (and its frequency), frequency outside 40–70 Hz,
    # power factor outside ±1 are dropped; power/energy/current are never touched
    assert auxiliary_checked({"power_w": 0.0, "voltage_v": 19.9, "frequency_hz": 50.0,
                              "power_factor": 1.2, "current_a": 0.0}) == {
        "power_w": 0.0, "voltage_v": None, "frequency_hz": None, "power_factor": None,
        "current_a": 0.0}
    assert auxiliary_checked({"voltage_v": 230.0, "frequency_hz": 4294.9}) == {
        "voltage_v": 230.0, "frequency_hz": None}


# -- 10. a misconfigured device leaves a trace (rate-limited) ---------------------------------------
def test_unknown_topic_in_a_family_is_a_rate_limited_dead_letter():
    p = processor(make_registry(["tasmota_1"]))
    topic = "tele/tasmota_1/SENSORS"  # a typo'd custom rule: no such Tasmota message
    outcomes = [p.process(topic, b'{"ENERGY": {"Power": 1}}', RX + i * 1000) for i in range(5)]
    (letter,) = dead(outcomes[0])
    assert (letter["reason"], letter["origin"], letter["decoder"]) == (
        "no_decoder", topic, "tasmota")
    assert letter["payload"] == '{"ENERGY": {"Power": 1}}'  # the sample
    assert [o.ignored for o in outcomes[1:]] == ["rate_limited"] * 4
    assert all(o.suppressed_reason == "no_decoder" and not o.records for o in outcomes[1:])
    # another origin is sampled on its own
    (other,) = dead(p.process("shellies/shellyem-AA/emeter/0/bogus_quantity", b"1", RX))
    assert other["origin"] == "shellies/shellyem-AA/emeter/0/bogus_quantity"
    # after the window the next sample says how many were only counted
    (later,) = dead(p.process(topic, b"{}", RX + RATE_WINDOW_MS + 1))
    assert later["suppressed"] == 4
    # a decode error of a known topic is never limited: each bad payload is kept for replay
    bad = [p.process("tele/tasmota_1/SENSOR", f"garbage {i}".encode(), RX) for i in range(3)]
    assert [len(dead(o)) for o in bad] == [1, 1, 1]
