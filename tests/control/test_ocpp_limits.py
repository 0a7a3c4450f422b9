"""The pure parts of the OCPP central system: a charger's bounds, the profile of a limit, the
read-back from a composite schedule, and meter values → reading fields (numbers by hand)."""

from __future__ import annotations

import pytest
from control_helpers import make_registry

from control.ocpp.limits import (
    ChargerSpec,
    Composite,
    OutOfBounds,
    RateUnit,
    holds,
    iso,
    parse_time,
    plan,
    readback,
)
from control.ocpp.meter import fields_of
from ioe.registry import Device, Role

T0 = 1_796_342_400_000  # 2026-12-04T00:00:00Z (20791 days · 86400 s)


def charger(**protocol) -> ChargerSpec:
    return ChargerSpec.of(Device("ev-x", "ce", Role.CONSUMPTION,
                                 protocol={"type": "ocpp", "charge_point": "CP-X", **protocol}))


def test_registry_values_win_over_the_defaults_table():
    spec = ChargerSpec.of(make_registry().device("ev-1"))
    assert (spec.charge_point, spec.connector, spec.min_current_a, spec.max_current_a,
            spec.phases, spec.profile_s) == ("CP-1", 1, 6.0, 16.0, 1, 900)
    three = charger(phases=3, max_current_a=32, min_current_a=8, voltage_v=230)
    assert three.bounds(RateUnit.WATTS) == (8 * 230 * 3, 32 * 230 * 3)


@pytest.mark.parametrize("protocol", [{"min_current_a": 10, "max_current_a": 6},
                                      {"phases": 4}, {"max_current_a": "lots"}])
def test_an_unusable_charger_entry_is_refused(protocol):
    with pytest.raises(OutOfBounds):
        charger(**protocol)


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("ev_current_a", 0, 0.0), ("ev_current_a", 6, 6.0), ("ev_current_a", 16, 16.0),
    ("ev_current_a", None, None), ("ev_power_w", 1380, 1380.0), ("ev_power_w", 0, 0.0)])
def test_valid_limits(key, value, expected):
    assert charger().check(key, value) == expected


@pytest.mark.parametrize(("key", "value", "why"), [
    ("ev_current_a", 5.9, "below ev-x's minimum 6 A"),
    ("ev_current_a", 16.1, "above ev-x's maximum 16 A"),
    ("ev_current_a", -1, "not a limit"),
    ("ev_current_a", "fast", "not a number"),
    ("ev_power_w", 1379, "below ev-x's minimum 1380 W"),   # 6 A · 230 V
    ("ev_power_w", 3681, "above ev-x's maximum 3680 W"),   # 16 A · 230 V
    ("relay", "on", "not a charger setting")])
def test_limits_outside_the_bounds(key, value, why):
    with pytest.raises(OutOfBounds, match=why):
        charger().check(key, value)


def test_the_profile_lasts_revert_s_or_the_default_and_never_more_than_a_day():
    spec = charger()
    profile = plan(spec, "ev_current_a", 10.0, T0 + 456, revert_s=120)
    assert (profile.start_ms, profile.duration_s, profile.valid_to_ms) == (T0, 120, T0 + 120_000)
    wire = profile.profile()
    assert wire["validFrom"] == "2026-12-04T00:00:00.000Z"
    assert wire["validTo"] == "2026-12-04T00:02:00.000Z"
    assert wire["chargingSchedule"]["duration"] == 120
    assert plan(spec, "ev_current_a", 10.0, T0, None).duration_s == 900
    assert plan(spec, "ev_current_a", 10.0, T0, 0).duration_s == 900
    assert plan(spec, "ev_current_a", 10.0, T0, 10 * 24 * 3600).duration_s == 24 * 3600


def test_read_back_from_the_composite_schedule():
    spec = charger()
    answer = {"charging_rate_unit": "W", "start_schedule": iso(T0), "duration": 600,
              "charging_schedule_period": [{"start_period": 0, "limit": 2300},
                                           {"start_period": 300, "limit": 1380}]}
    composite = Composite.of(None, answer, T0)
    assert composite is not None
    assert readback(spec, composite, RateUnit.AMPS, T0 + 1000) == 10.0     # 2300 W / 230 V
    assert readback(spec, composite, RateUnit.AMPS, T0 + 301_000) == 6.0
    assert readback(spec, composite, RateUnit.WATTS, T0 + 301_000) == 1380.0
    assert readback(spec, composite, RateUnit.AMPS, T0 + 600_000) is None  # over
    assert Composite.of(None, None, T0) is None
    assert holds(10.0, 10.0, spec, RateUnit.AMPS) and not holds(10.0, 9.0, spec, RateUnit.AMPS)
    assert not holds(10.0, None, spec, RateUnit.AMPS)
    assert holds(None, None, spec, RateUnit.AMPS) and holds(None, 16.0, spec, RateUnit.AMPS)
    assert not holds(None, 10.0, spec, RateUnit.AMPS)  # a limit is still in force


def test_ocpp_times_are_utc():
    assert parse_time("2026-12-04T00:00:00Z") == T0
    assert parse_time("2026-12-04T01:00:00+01:00") == T0
    assert parse_time("2026-12-04T00:00:00") == T0  # no offset: UTC, as OCPP requires


def test_meter_value_fields_by_hand():
    assert fields_of([{"value": "1234"}]) == {"energy_wh": 1234.0}  # the defaults
    assert fields_of([{"value": "1.5", "unit": "kWh"},
                      {"value": "0.3", "measurand": "Energy.Active.Export.Register",
                       "unit": "kWh"},
                      {"value": "3.7", "measurand": "Power.Active.Import", "unit": "kW"},
                      {"value": "49.98", "measurand": "Frequency"}]) == {
        "energy_wh": 1500.0, "energy_returned_wh": 300.0, "power_w": 3700.0,
        "frequency_hz": 49.98}
    # a total wins over its phases; unknown units, signed data, the car and the body are out
    assert fields_of([
        {"value": "7000", "measurand": "Power.Active.Import", "unit": "W"},
        {"value": "2000", "measurand": "Power.Active.Import", "unit": "W", "phase": "L1"},
        {"value": "20", "measurand": "Power.Active.Import", "unit": "Celsius"},
        {"value": "AB12", "format": "SignedData"},
        {"value": "80", "measurand": "SoC", "location": "EV"},
        {"value": "16", "measurand": "Current.Import", "unit": "A", "location": "Body"},
        {"value": "5", "measurand": "Current.Import", "unit": "A", "phase": "N"}]) == {
        "power_w": 7000.0}
