"""Every decoder, fuzzed: a message becomes readings (finite, contract-valid), a dead letter with
a reason, or an explicit ignore — never an exception, never a non-finite value.

The default run is bounded (hypothesis, a few hundred examples per family); the long run
(``pytest -m long``) pushes ≥ 1,000,000 mutated real-world messages through the processor.
"""

from __future__ import annotations

import math
import os
import random
import string

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqtt_helpers import make_registry

from connectors.mqtt_bridge.decoders import IGNORE_REASONS, DecodeContext
from connectors.mqtt_bridge.processor import Outcome, Processor
from ioe.reading import Reading
from ioe.topics import DEADLETTER, READINGS

RX = 1716199200000
DEVICES = ["plug", "tas", "node:1", "node:2", "pro:0", "pro:1", "sh-1:0", "a/b:0"]
ROUTED = [
    {"id": "compteur", "role": "grid", "member": "m1",
     "protocol": {"type": "mqtt", "decoder": "tasmota", "topic": "compteur",
                  "full_topic": "%topic%/%prefix%/"}},
    {"id": "cocina:0", "role": "consumption", "member": "m1",
     "protocol": {"type": "mqtt", "decoder": "shelly-gen2", "topic": "shellies/plus1pm"}},
    {"id": "acme", "role": "generation", "member": "m2",
     "protocol": {"type": "mqtt", "decoder": "json-map", "topic": "acme/+/state",
                  "fields": {"power_w": {"path": "p", "unit": "kW"},
                             "energy_wh": {"path": "e.0", "unit": "MWh"}},
                  "ts": {"path": "t", "format": "ms"}}},
]
REGISTRY = make_registry(DEVICES, ROUTED)

#: (topic, payload template) of every family, as the devices send them
TOPICS_BY_FAMILY = {
    "shelly_gen1": ["shellies/sh-1/emeter/0/{q}", "shellies/a/b/relay/0/{q}",
                    "shellies/sh-1/online", "shellies/sh-1/{q}", "shellies/announce"],
    "shelly_gen2": ["pro/events/rpc", "pro/status/{c}", "shellies/plus1pm/status/{c}",
                    "shellies/x/events/rpc", "pro/online"],
    "tasmota": ["tele/tas/SENSOR", "stat/tas/STATUS8", "tele/tas/{q}", "compteur/tele/SENSOR",
                "tele/tas/LWT"],
    "emonhub": ["emon/node", "emon/node/{q}", "emon/{q}"],
    "zigbee2mqtt": ["zigbee2mqtt/plug", "zigbee2mqtt/plug/{q}", "zigbee2mqtt/bridge/state",
                    "zigbee2mqtt/plug/availability"],
    "json_map": ["acme/x/state"],
}
KEYS = ["Time", "ENERGY", "Power", "Total", "Voltage", "Current", "Factor", "ExportActive",
        "StatusSNS", "method", "params", "ts", "em:0", "emdata:0", "em1:0", "switch:0",
        "total_act_power", "a_voltage", "apower", "aenergy", "total", "voltage", "freq", "pf",
        "time", "P1", "E1", "power1", "vrms", "power", "energy", "current", "last_seen",
        "p", "e", "t", "Frequency"]
QUANTITIES = ["power", "total", "total_returned", "voltage", "energy", "pf", "SENSOR", "STATE",
              "P1", "E2", "vrms", "energy", "power", "state", "bogus", "switch:0", "em:0",
              "emdata:1", "sys", ""]
NUMBERS = st.one_of(st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from([0, -0.0, 1e308, -1e308, 5e-324, 4294.9, 1716199200.5,
                                     1716199200000]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS,
                    st.text(max_size=12), st.sampled_from(["2024-05-20T12:00:00",
                                                           "2025-03-30T02:30:00",
                                                           "2024-05-20T12:00:00+02:00",
                                                           "NotifyStatus", "nan", "Infinity"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS), inner, max_size=6),
                      max_leaves=20)
DOCS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=8)
PAYLOADS = st.one_of(
    DOCS.map(orjson.dumps),
    st.binary(max_size=40),
    (NUMBERS | st.integers(-(2**90), 2**90)).map(lambda n: str(n).encode()),
    st.integers(2**64, 2**90).map(lambda n: b'{"time": %d, "P1": 1, "power": 2, "ts": %d}' % (n, n)),
    st.sampled_from([b"nan", b"inf", b"-inf", b"1e999", b"true", b"Online", b"ON", b"{", b"[]",
                     b"null", b"12.05", b"\xff\xfe", b"  42  "]),
)


def family_topics(family: str) -> st.SearchStrategy[str]:
    return st.builds(lambda t, q, c: t.format(q=q, c=c), st.sampled_from(TOPICS_BY_FAMILY[family]),
                     st.sampled_from(QUANTITIES),
                     st.sampled_from(["switch:0", "em:0", "em1:1", "emdata:0", "sys", "pm1:0",
                                      "em:x", "wifi"]))


def check(outcome: Outcome) -> None:
    """The invariant of every message: readings are valid and finite, dead letters have a
    reason, a message without records says why."""
    for record in outcome.records:
        if record.topic == READINGS:
            reading = Reading.from_json(record.value)  # the contract, again
            for name in ("power_w", "energy_wh", "energy_returned_wh", "voltage_v",
                         "current_a", "frequency_hz", "power_factor", "interval_energy_wh"):
                value = getattr(reading, name)
                assert value is None or math.isfinite(value), (name, value)
        else:
            assert record.topic == DEADLETTER
            letter = orjson.loads(record.value)
            assert letter["reason"] and letter["reason"] != "internal_error", letter
            assert letter["origin"]
    if not outcome.records:
        assert outcome.ignored in IGNORE_REASONS, outcome


@pytest.mark.parametrize("family", sorted(TOPICS_BY_FAMILY))
def test_fuzz_each_decoder(family):
    processor = Processor(REGISTRY, DecodeContext())

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(family_topics(family), PAYLOADS)
    def one(topic: str, payload: bytes) -> None:
        check(processor.process(topic, payload, RX))

    one()


# -- the long run: ≥ 1M mutated real-world messages ---------------------------------------------
SEEDS: list[tuple[str, bytes]] = [
    ("shellies/sh-1/emeter/0/power", b"-300.5"),
    ("shellies/sh-1/emeter/0/total", b"123456.7"),
    ("shellies/a/b/relay/0/power", b"12"),
    ("pro/events/rpc", orjson.dumps({"method": "NotifyStatus", "params": {
        "ts": 1716199000.5, "em:0": {"total_act_power": 1500.5, "a_voltage": 230.1,
                                    "b_voltage": 0.0, "a_freq": 50.0}}})),
    ("shellies/plus1pm/status/switch:0", orjson.dumps({"id": 0, "apower": 47.3, "voltage": 229.8,
                                                       "aenergy": {"total": 11.679}})),
    ("tele/tas/SENSOR", orjson.dumps({"Time": "2024-05-20T12:00:00", "ENERGY": {
        "Total": 1.5, "Power": [850, 10], "Voltage": 0.0, "Current": 3.9, "Factor": 0.94}})),
    ("compteur/tele/SENSOR", orjson.dumps({"ENERGY": {"Total": 5, "Power": 47}})),
    ("stat/tas/STATUS8", orjson.dumps({"StatusSNS": {"ENERGY": {"Power": 5}}})),
    ("emon/node", orjson.dumps({"time": 1716199000, "P1": 100, "E1": 5000, "vrms": 231})),
    ("emon/node/power2", b"42"),
    ("zigbee2mqtt/plug", orjson.dumps({"power": 12, "energy": 1.5, "last_seen": 1716199000000})),
    ("zigbee2mqtt/plug/energy", b"12.05"),
    ("acme/x/state", orjson.dumps({"p": 2.5, "e": [0.001], "t": 1716199000000})),
]
JUNK = [b"nan", b"1e309", b"-", b"\x00", b'"', b"{}", b"[", b"]", b"null", b"true", b"9" * 30,
        b"-0", b",", b":", b"}", b"\xff"]


def mutate(rng: random.Random, payload: bytes) -> bytes:
    data = bytearray(payload)
    for _ in range(rng.randint(1, 3)):
        choice = rng.random()
        if not data or choice < 0.3:
            data[rng.randint(0, len(data)):rng.randint(0, len(data))] = rng.choice(JUNK)
        elif choice < 0.6:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.8:
            start = rng.randrange(len(data))
            del data[start:start + rng.randint(1, 6)]
        else:
            digits = rng.choice(string.digits + ".-e")
            data.insert(rng.randint(0, len(data)), ord(digits))
    return bytes(data)


@pytest.mark.long
@pytest.mark.timeout(3600)  # a million inputs on a shared machine
def test_long_fuzz_a_million_messages():
    count = int(os.environ.get("IOE_FUZZ_INPUTS", "1000000"))
    rng = random.Random(20261203)
    processor = Processor(REGISTRY, DecodeContext())
    outcomes = {"readings": 0, "dead_letters": 0, "ignored": 0}
    for i in range(count):
        topic, payload = SEEDS[i % len(SEEDS)]
        if rng.random() < 0.9:
            payload = mutate(rng, payload)
        outcome = processor.process(topic, payload, RX + i)
        check(outcome)
        outcomes["readings"] += outcome.readings
        outcomes["dead_letters"] += len(outcome.dead_letter_reasons)
        outcomes["ignored"] += outcome.ignored is not None
    print(f"mqtt fuzz: {count} inputs, 0 crashes, {outcomes}")
