"""Shelly Gen2/Gen3 (Pro 3EM, Pro EM, EM Gen3, Plus plugs): JSON-RPC notifications.

``<prefix>/events/rpc`` carries ``NotifyStatus`` (only the fields that changed, ``params.ts`` in
Unix seconds) and ``NotifyFullStatus``; ``<prefix>/status/<component>`` carries one component's
full status (no timestamp: the receipt time is used). Because deltas omit unchanged fields, the
decoder keeps the last known value of every component field per device and builds each reading
from that merged state — but only from the components the message touched, so a counter that
was not re-reported is not re-stamped with a newer time.

Components ``em:N``/``emdata:N`` (three-phase) and ``em1:N``/``em1data:N`` (one channel) of the
same index N are one device ``<prefix>:<N>``. A phase with (near) 0 V is an unconnected phase: it
is left out of the voltage average and its (absurd) frequency is ignored, without error.
"""

from __future__ import annotations

from typing import Any

from ioe.reading import FREQ_RANGE_HZ, MIN_CONNECTED_V

from .base import (
    DecodeContext,
    Decoded,
    DecodeError,
    epoch_seconds_to_ms,
    has_measurement,
    load_json,
    load_object,
    number,
    reading,
)

SOURCE = "shelly-gen2"
NAME = "shelly_gen2"

#: component kind -> {field path in the component: contract field}
COMPONENT_FIELDS: dict[str, dict[str, str]] = {
    "em": {"total_act_power": "power_w", "total_current": "current_a"},
    "emdata": {"total_act": "energy_wh", "total_act_ret": "energy_returned_wh"},
    "em1": {"act_power": "power_w", "voltage": "voltage_v", "current": "current_a",
            "freq": "frequency_hz", "pf": "power_factor"},
    "em1data": {"total_act_energy": "energy_wh", "total_act_ret_energy": "energy_returned_wh"},
    # Plus/Pro plugs and PM modules: same device naming, aenergy totals are Wh
    "switch": {"apower": "power_w", "voltage": "voltage_v", "current": "current_a",
               "freq": "frequency_hz", "pf": "power_factor", "aenergy.total": "energy_wh",
               "ret_aenergy.total": "energy_returned_wh"},
    "pm1": {"apower": "power_w", "voltage": "voltage_v", "current": "current_a",
            "freq": "frequency_hz", "pf": "power_factor", "aenergy.total": "energy_wh",
            "ret_aenergy.total": "energy_returned_wh"},
}
PHASES = ("a", "b", "c")
RPC_METHODS_WITH_STATUS = ("NotifyStatus", "NotifyFullStatus")


def matches(topic: str) -> bool:
    parts = topic.split("/")
    if len(parts) < 2:
        return False
    if parts[-2:] == ["events", "rpc"] and len(parts) >= 3:
        return True
    if len(parts) >= 3 and parts[-2] == "status":
        return True
    return parts[-1] == "online" and "shelly" in parts[-2].lower()


def decode(topic: str, payload: bytes, received_at_ms: int, ctx: DecodeContext) -> Decoded:
    parts = topic.split("/")
    if parts[-1] == "online":
        return Decoded.ignore("availability")
    if parts[-2] == "status":
        prefix, component = "/".join(parts[:-2]), parts[-1]
        status = load_json(payload)
        if not isinstance(status, dict):
            raise DecodeError(f"status of {component}: expected a JSON object")
        return _apply(ctx, prefix, {component: status}, received_at_ms)
    prefix = "/".join(parts[:-2])
    message = load_object(payload)
    method = message.get("method")
    if method not in RPC_METHODS_WITH_STATUS:
        return Decoded.ignore("not_a_reading")  # NotifyEvent, RPC replies…
    params = message.get("params")
    if not isinstance(params, dict):
        raise DecodeError(f"{method}: 'params' must be an object")
    ts_ms = epoch_seconds_to_ms(params["ts"], "params.ts") if "ts" in params else received_at_ms
    components = {k: v for k, v in params.items() if k != "ts"}
    return _apply(ctx, prefix, components, ts_ms)


def _split_component(name: str) -> tuple[str, int] | None:
    kind, sep, index = name.partition(":")
    if not sep or kind not in COMPONENT_FIELDS:
        return None
    if not index.isdigit():
        raise DecodeError(f"component {name!r}: index must be a number")
    return kind, int(index)


def _apply(ctx: DecodeContext, prefix: str, components: dict[str, Any], ts_ms: int) -> Decoded:
    if not prefix:
        raise DecodeError("empty Shelly topic prefix")
    state = ctx.state_of(NAME)
    touched: dict[int, list[str]] = {}
    for name, delta in components.items():
        split = _split_component(name)
        if split is None:
            continue  # sys, wifi, temperature…
        kind, index = split
        if not isinstance(delta, dict):
            raise DecodeError(f"component {name!r}: expected an object, got {delta!r}")
        merged = state.setdefault((prefix, index), {}).setdefault(kind, {})
        merged.update(delta)
        touched.setdefault(index, []).append(kind)
    readings = []
    for index, kinds in sorted(touched.items()):
        device_state = state[(prefix, index)]
        values: dict[str, Any] = {}
        for kind in kinds:
            values.update(_component_values(kind, device_state[kind]))
        if has_measurement(values):
            readings.append(reading(f"{prefix}:{index}", ts_ms, SOURCE, values))
    if not touched:
        return Decoded.ignore("no_measurement")
    return Decoded.of(*readings)


def _path(component: dict[str, Any], path: str) -> Any:
    value: Any = component
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _component_values(kind: str, component: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {target: number(_path(component, path), f"{kind}.{path}")
                              for path, target in COMPONENT_FIELDS[kind].items()}
    if kind == "em":
        values.update(_three_phase_values(component))
    # an unconnected channel's voltage/frequency: dropped by base.auxiliary_checked (one rule)
    return values


def _plausible_freq(freq: float) -> bool:
    return FREQ_RANGE_HZ[0] <= freq <= FREQ_RANGE_HZ[1]


def _three_phase_values(em: dict[str, Any]) -> dict[str, Any]:
    """Mean voltage and the frequency of the connected phases; unconnected ones are skipped."""
    voltages, freqs = [], []
    for phase in PHASES:
        voltage = number(em.get(f"{phase}_voltage"), f"em.{phase}_voltage")
        if voltage is None or voltage < MIN_CONNECTED_V:
            continue
        voltages.append(voltage)
        freq = number(em.get(f"{phase}_freq"), f"em.{phase}_freq")
        if freq is not None and _plausible_freq(freq):
            freqs.append(freq)
    return {
        "voltage_v": sum(voltages) / len(voltages) if voltages else None,
        "frequency_hz": freqs[0] if freqs else None,
    }
