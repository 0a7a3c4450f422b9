"""The reading contract: strict validation with errors that name the field, lossless JSON."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ioe.reading import MIN_TS_MS, Reading, ReadingError, decode

NOW = 1_780_000_000_000  # 2026-05-28T20:26:40Z


def valid(**overrides):
    data = {"v": 1, "device_id": "shellyem-A1:0", "ts_ms": NOW - 1000, "source": "shelly-gen1",
            "power_w": 512.5, "energy_wh": 123456.0}
    data.update(overrides)
    return data


def test_valid_reading_round_trips():
    reading = Reading.from_dict(valid(), now_ms=NOW)
    assert reading.power_w == 512.5
    assert reading.quality == "measured"
    assert decode(reading.to_json(), now_ms=NOW) == reading


def test_none_fields_are_omitted_from_the_wire():
    assert b"voltage_v" not in Reading.from_dict(valid(), now_ms=NOW).to_json()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"colour": "red"}, "colour"),                       # unknown field
        ({"power_w": "512"}, "power_w"),                      # wrong type
        ({"power_w": True}, "power_w"),                       # bool is not a number
        ({"ts_ms": 1.5e12}, "ts_ms"),                          # float timestamp
        ({"ts_ms": MIN_TS_MS - 1}, "ts_ms"),                   # before 2000
        ({"ts_ms": NOW + 25 * 3600 * 1000}, "ts_ms"),          # > 1 day in the future
        ({"device_id": ""}, "device_id"),
        ({"quality": "guessed"}, "quality"),
        ({"v": 2}, "v"),
        ({"interval_energy_wh": 12.0}, "interval_s"),          # interval energy without interval
        ({"interval_s": 0, "interval_energy_wh": 1.0}, "interval_s"),
    ],
)
def test_invalid_readings_name_the_field(change, field):
    with pytest.raises(ReadingError) as info:
        Reading.from_dict(valid(**change), now_ms=NOW)
    assert info.value.field == field
    assert field in str(info.value)


def test_missing_required_field():
    data = valid()
    del data["source"]
    with pytest.raises(ReadingError, match="source"):
        Reading.from_dict(data, now_ms=NOW)


@pytest.mark.parametrize("literal", [b'{"power_w": NaN}', b'{"power_w": Infinity}'])
def test_nan_and_infinity_are_refused(literal):
    with pytest.raises(ReadingError):
        decode(literal, now_ms=NOW)


def test_non_finite_python_floats_are_refused():
    with pytest.raises(ReadingError, match="power_w"):
        Reading.from_dict(valid(power_w=math.inf), now_ms=NOW)


def test_garbage_is_a_reading_error_not_a_crash():
    for raw in (b"", b"[]", b"\xff\xfe", b"null", b'"x"'):
        with pytest.raises(ReadingError):
            decode(raw, now_ms=NOW)


finite = st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e12,
                   max_value=1e12)
optional_finite = st.none() | finite


@given(
    device_id=st.text(min_size=1, max_size=60),
    ts_ms=st.integers(min_value=MIN_TS_MS, max_value=NOW),
    power=optional_finite, energy=optional_finite, returned=optional_finite,
    voltage=optional_finite, status=st.none() | st.text(min_size=1, max_size=20),
    quality=st.sampled_from(["measured", "estimated", "interpolated"]),
    interval=st.none() | st.integers(min_value=1, max_value=86400),
)
def test_encode_decode_round_trip(device_id, ts_ms, power, energy, returned, voltage, status,
                                  quality, interval):
    reading = Reading(device_id=device_id, ts_ms=ts_ms, source="json-map", power_w=power,
                      energy_wh=energy, energy_returned_wh=returned, voltage_v=voltage,
                      status=status, quality=quality, interval_s=interval,
                      interval_energy_wh=1.0 if interval else None)
    decoded = decode(reading.to_json(), now_ms=NOW)
    assert decoded == reading
    # and the JSON is plain: a second, independent decoder sees the same numbers
    assert orjson.loads(reading.to_json()).get("power_w") == power
