"""OCPP 1.6 meter values → contract readings (W, Wh, V, A, Hz; UTC milliseconds) — pure.

Why a table: a charger reports each quantity as a measurand with an optional unit, phase and
location, and the defaults matter (no measurand = ``Energy.Active.Import.Register``, no unit =
the measurand's base unit). Per-phase values are folded the way the contract means them: energy
and power are summed over the phases, current is the highest phase current (the number a
per-phase current limit is compared with), voltage and frequency are averaged over the
line-to-neutral phases. A total reported without a phase wins over the phases. Values of the
car (``location: EV``, the state of charge) or the charger's body (temperature) are not part of
the reading; signed values are skipped (they are a proof, not a number).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from control.ocpp.limits import ChargerSpec, parse_time
from ioe.reading import Reading

log = logging.getLogger(__name__)

SOURCE = "ocpp"


def _sum(values: Sequence[float]) -> float:
    return sum(values)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


@dataclass(frozen=True)
class Measurand:
    field: str
    #: unit → factor to the reading's unit; "" is the unit when the charger gives none
    units: Mapping[str, float]
    fold: Callable[[Sequence[float]], float]


MEASURANDS: Mapping[str, Measurand] = {
    "Energy.Active.Import.Register": Measurand("energy_wh", {"": 1.0, "Wh": 1.0, "kWh": 1000.0},
                                               _sum),
    "Energy.Active.Export.Register": Measurand("energy_returned_wh",
                                               {"": 1.0, "Wh": 1.0, "kWh": 1000.0}, _sum),
    "Power.Active.Import": Measurand("power_w", {"": 1.0, "W": 1.0, "kW": 1000.0}, _sum),
    "Current.Import": Measurand("current_a", {"": 1.0, "A": 1.0}, max),
    "Voltage": Measurand("voltage_v", {"": 1.0, "V": 1.0}, _mean),
    "Frequency": Measurand("frequency_hz", {"": 1.0}, _mean),
    "Power.Factor": Measurand("power_factor", {"": 1.0}, _mean),
}
DEFAULT_MEASURAND = "Energy.Active.Import.Register"
#: locations that are not the charger's supply (the car, the enclosure)
SKIPPED_LOCATIONS = frozenset({"EV", "Body"})
#: phases that are not one line against neutral (line-to-line voltage, the neutral current)
SKIPPED_PHASES = frozenset({"N", "L1-L2", "L2-L3", "L3-L1"})


def _sampled(sample: Mapping[str, Any]) -> tuple[str, str | None, float] | None:
    """(reading field, phase, value in the reading's unit) of one sampled value, or None."""
    measurand = MEASURANDS.get(sample.get("measurand") or DEFAULT_MEASURAND)
    if measurand is None or sample.get("format") == "SignedData":
        return None
    if sample.get("location") in SKIPPED_LOCATIONS or sample.get("phase") in SKIPPED_PHASES:
        return None
    factor = measurand.units.get(sample.get("unit") or "")
    if factor is None:
        log.warning("ocpp: %s in unit %r is not understood: skipped", sample.get("measurand"),
                    sample.get("unit"))
        return None
    try:
        value = round(float(sample["value"]) * factor, 6)
    except (KeyError, TypeError, ValueError):
        return None
    phase = sample.get("phase")
    return measurand.field, (phase.removesuffix("-N") if phase else None), value


def fields_of(samples: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The reading's fields from the sampled values of one timestamp."""
    totals: dict[str, float] = {}
    phases: dict[str, dict[str, float]] = {}
    for sample in samples:
        found = _sampled(sample)
        if found is None:
            continue
        name, phase, value = found
        if phase is None:
            totals[name] = value
        else:
            phases.setdefault(name, {})[phase] = value
    folds = {m.field: m.fold for m in MEASURANDS.values()}
    for name, by_phase in phases.items():
        if name not in totals:
            totals[name] = folds[name](list(by_phase.values()))
    return totals


def readings(spec: ChargerSpec, meter_value: Iterable[Mapping[str, Any]],
             status: str | None = None) -> list[Reading]:
    """One reading per ``MeterValue`` (snake_case, as the library hands them over) that
    carries anything; its ``status`` is the connector's last reported status."""
    out = []
    for value in meter_value:
        values: dict[str, Any] = fields_of(value.get("sampled_value") or ())
        if not values:
            continue
        out.append(Reading(device_id=spec.device_id, ts_ms=parse_time(value["timestamp"]),
                           source=SOURCE, community_id=spec.community_id, status=status,
                           **values))
    return out


def register_reading(spec: ChargerSpec, meter_wh: int, timestamp: str,
                     status: str | None = None) -> Reading:
    """``StartTransaction.meterStart`` / ``StopTransaction.meterStop``: the energy register in
    Wh (OCPP 1.6 defines both as Wh integers)."""
    return Reading(device_id=spec.device_id, ts_ms=parse_time(timestamp), source=SOURCE,
                   community_id=spec.community_id, energy_wh=float(meter_wh), status=status)
