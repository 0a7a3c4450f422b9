"""From message to Kafka records: registry lookup, dead letters, retained/LWT, fuzzing."""

from __future__ import annotations

import string

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqtt_helpers import COMMUNITY, make_registry

from connectors.mqtt_bridge.decoders import IGNORE_REASONS, DecodeContext
from connectors.mqtt_bridge.processor import Outcome, Processor
from ioe.reading import Reading
from ioe.topics import DEADLETTER, READINGS

RX = 1716199200000
REGISTRY = make_registry(
    ["shellyem-AA:0", "tasmota_1", "emonpi:1", "plug1", "shellypro3em-ab:0"],
    [{"id": "acme-42", "role": "generation", "member": "m2",
      "protocol": {"type": "mqtt", "decoder": "json-map", "topic": "acme/meter42",
                   "fields": {"power_w": {"path": "p", "unit": "kW"}}}}])


def processor(root: str = "") -> Processor:
    return Processor(REGISTRY, DecodeContext(), topic_root=root)


def records(outcome: Outcome, topic: str) -> list[dict[str, object]]:
    return [orjson.loads(r.value) for r in outcome.records if r.topic == topic]


def test_known_device_goes_to_readings_keyed_by_community() -> None:
    outcome = processor().process("shellies/shellyem-AA/emeter/0/power", b"-300.5", RX)
    assert outcome.readings == 1 and outcome.decoder == "shelly_gen1"
    (record,) = outcome.records
    assert (record.topic, record.key) == (READINGS, COMMUNITY)
    reading = Reading.from_json(record.value)
    assert (reading.community_id, reading.power_w, reading.ts_ms) == (COMMUNITY, -300.5, RX)


def test_unknown_device_is_dead_lettered_with_everything_needed_to_replay() -> None:
    outcome = processor().process("shellies/shellyem-ZZ/emeter/0/power", b"12", RX)
    (dead,) = records(outcome, DEADLETTER)
    assert outcome.readings == 0 and outcome.dead_letter_reasons == ["unknown_device"]
    assert dead["reason"] == "unknown_device" and dead["device_id"] == "shellyem-ZZ:0"
    assert dead["topic"] == "shellies/shellyem-ZZ/emeter/0/power"
    assert dead["payload"] == "12" and dead["decoder"] == "shelly_gen1"
    assert outcome.records[0].key == "mqtt-bridge"


def test_mixed_known_and_unknown_channels() -> None:
    doc = orjson.dumps({"time": 1716199000, "P1": 10, "P2": 20})
    outcome = processor().process("emon/emonpi", doc, RX)
    assert outcome.readings == 1 and outcome.dead_letter_reasons == ["unknown_device"]


def test_decode_errors_keep_topic_payload_and_decoder() -> None:
    outcome = processor().process("tele/tasmota_1/SENSOR", b"\xff\x00garbage", RX)
    (dead,) = records(outcome, DEADLETTER)
    assert dead["reason"] == "decode_error" and dead["decoder"] == "tasmota"
    assert dead["payload_b64"] and dead["topic"] == "tele/tasmota_1/SENSOR"


def test_invalid_reading_unset_clock() -> None:
    doc = orjson.dumps({"Time": "1970-01-01T00:00:12", "ENERGY": {"Power": 5}})
    outcome = processor().process("tele/tasmota_1/SENSOR", doc, RX)
    assert outcome.dead_letter_reasons == ["invalid_reading"]


def test_no_decoder() -> None:
    outcome = processor().process("home/livingroom/temperature", b"21", RX)
    assert outcome.dead_letter_reasons == ["no_decoder"]


def test_retained_and_lwt_are_not_fresh_readings() -> None:
    p = processor()
    retained = p.process("shellies/shellyem-AA/emeter/0/power", b"5", RX, retain=True)
    assert retained.records == [] and retained.ignored == "retained"
    lwt = p.process("tele/tasmota_1/LWT", b"Online", RX)
    assert lwt.records == [] and lwt.ignored == "availability"


def test_topic_root_is_stripped_and_required() -> None:
    p = processor("t/abc")
    assert p.process("t/abc/shellies/shellyem-AA/emeter/0/power", b"5", RX).readings == 1
    assert p.process("shellies/shellyem-AA/emeter/0/power", b"5",
                     RX).dead_letter_reasons == ["no_decoder"]


def test_json_map_from_registry() -> None:
    outcome = processor().process("acme/meter42", b'{"p": 2.5}', RX)
    (reading,) = records(outcome, READINGS)
    assert reading["device_id"] == "acme-42" and reading["power_w"] == 2500.0


# -- fuzzing: never crash, every input accounted for ----------------------------------------------
SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "_-:.", min_size=0, max_size=12)
KNOWN_SHAPES = st.sampled_from([
    "shellies/{a}/emeter/{n}/{b}", "shellies/{a}/online", "shellies/{a}/relay/{n}/power",
    "{a}/events/rpc", "{a}/status/{b}:{n}", "{a}/status/em:{n}", "tele/{a}/SENSOR",
    "tele/{a}/LWT", "stat/{a}/STATUS10", "emon/{a}/{b}", "emon/{a}", "zigbee2mqtt/{a}",
    "zigbee2mqtt/{a}/{b}", "acme/meter42", "{a}/{b}", "{a}",
])
TOPICS = st.builds(lambda shape, a, b, n: shape.format(a=a, b=b, n=n), KNOWN_SHAPES, SEGMENT,
                   SEGMENT, st.integers(-1, 12))
JSON_LEAF = st.none() | st.booleans() | st.integers(-10**12, 10**15) | st.floats(
    allow_nan=True, allow_infinity=True) | st.text(max_size=20)
JSON_KEYS = st.sampled_from([
    "ts", "method", "params", "em:0", "emdata:0", "em1:1", "em1data:1", "total_act_power",
    "a_voltage", "a_freq", "total_act", "act_power", "voltage", "Time", "ENERGY", "Power",
    "Total", "Voltage", "Factor", "ExportActive", "StatusSNS", "time", "P1", "E1", "vrms",
    "power", "energy", "last_seen", "p", "x"]) | st.text(max_size=8)
JSON_DOCS = st.recursive(JSON_LEAF, lambda children: st.lists(children, max_size=4)
                         | st.dictionaries(JSON_KEYS, children, max_size=6), max_leaves=20)
PAYLOADS = st.binary(max_size=64) | JSON_DOCS.map(
    lambda d: orjson.dumps(d, option=orjson.OPT_SERIALIZE_NUMPY, default=str)
    if not isinstance(d, float) or d == d and abs(d) != float("inf") else repr(d).encode()
) | st.sampled_from([b"NotifyStatus", b"nan", b"-0", b"1e309", b"true", b"Online"])


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(topic=TOPICS, payload=PAYLOADS, retain=st.booleans(),
       received=st.integers(0, 4_102_444_800_000))
def test_fuzz_every_message_is_a_reading_a_dead_letter_or_an_explicit_ignore(
        topic: str, payload: bytes, retain: bool, received: int) -> None:
    outcome = processor().process(topic, payload, received, retain)
    if outcome.ignored is not None:
        assert outcome.records == [] and outcome.ignored in IGNORE_REASONS
        return
    assert outcome.records, "a message with neither readings nor dead letters was lost"
    assert outcome.readings + len(outcome.dead_letter_reasons) == len(outcome.records)
    for record in outcome.records:
        if record.topic == READINGS:
            reading = Reading.from_json(record.value)  # re-validates the contract
            assert reading.community_id == COMMUNITY == record.key
        else:
            assert record.topic == DEADLETTER
            dead = orjson.loads(record.value)
            assert dead["reason"] and dead["topic"] == topic
            assert "payload" in dead or "payload_b64" in dead
            assert dead["reason"] != "internal_error", dead


def test_fast_dict_matches_the_contract_serialisation() -> None:
    """The processor encodes each reading once; it must give the contract's bytes."""
    outcome = processor().process("tele/tasmota_1/SENSOR",
                                  b'{"Time":"2024-05-20T12:00:00","ENERGY":{"Power":850}}', RX)
    parsed = Reading.from_json(outcome.records[0].value)
    assert outcome.records[0].value == parsed.to_json()


def test_oversized_payload_is_kept_truncated() -> None:
    payload = b'{"power": 1, "pad": "' + b"x" * (2 << 20) + b'"}'
    outcome = processor().process("zigbee2mqtt/plug1", payload, RX)
    (dead,) = records(outcome, DEADLETTER)
    assert dead["reason"] == "payload_too_large" and dead["payload_bytes"] == len(payload)
    assert len(dead["payload"]) == 64 << 10
