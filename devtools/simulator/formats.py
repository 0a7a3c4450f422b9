"""The MQTT payloads real meters publish, built from one measurement.

Pure functions: ``(topic_id, Measurement) -> [(topic, payload, retain)]``, one per protocol in
:data:`FORMATS`. They reproduce what the devices' firmware sends, so the MQTT bridge is tested
against the real formats and nothing simulator-specific:

* Shelly Gen1 (Shelly EM / 3EM): one topic per quantity under ``shellies/<id>/emeter/<i>/``;
  ``total`` and ``total_returned`` in Wh, ``power`` in W, ``voltage`` in V, ``energy`` in
  watt-minutes since boot. No timestamp: the device never sends one (a bridge stamps receipt
  time, so only at ``--speed 1`` do Gen1 readings carry the simulated time).
* Shelly Gen2 Pro 3EM: JSON-RPC ``NotifyStatus`` on ``<prefix>/events/rpc`` with ``params.ts``
  (UTC epoch seconds, float) and the ``em:0`` component (per phase ``a_act_power`` …,
  ``total_act_power``) or the ``emdata:0`` component (``total_act``/``total_act_ret`` in Wh);
  plus the status topics ``<prefix>/status/em:0`` and ``<prefix>/status/emdata:0``.
* Tasmota: ``tele/<topic>/SENSOR`` with ``Time`` in the device's local time (no zone) and
  ``ENERGY`` (``Total``/``Today``/``Yesterday`` in kWh, ``Power`` in W, ``Voltage`` …).
* emonhub (node-variable format): ``emon/<node>/P<n>`` (W), ``emon/<node>/E<n>`` (Wh),
  ``emon/<node>/vrms`` (V), plain numbers; or, on request, the JSON variant on ``emon/<node>``
  with ``time``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import orjson

Message = tuple[str, bytes, bool]  # topic, payload, retain


@dataclass(frozen=True)
class Measurement:
    """One sample of a meter, in the system's units."""

    ts_ms: int
    power_w: float
    energy_wh: float
    energy_returned_wh: float
    voltage_v: float
    #: per phase share of the power (three-phase meters), sums to 1
    phase_split: tuple[float, float, float] = (1.0, 0.0, 0.0)
    power_factor: float = 0.95
    frequency_hz: float = 50.0
    #: Tasmota only: energy today / yesterday in Wh, and Wh since the previous message
    today_wh: float = 0.0
    yesterday_wh: float = 0.0
    period_wh: float = 0.0
    #: Shelly Gen1 only: energy since the device (re)started, Wh (published in watt-minutes)
    session_wh: float = 0.0
    #: emonhub / Shelly Gen1 channel
    channel: int = 0
    timezone: str = "Europe/Madrid"


def _num(value: float, digits: int) -> bytes:
    text = f"{value:.{digits}f}"
    return text.encode()


def shelly_gen1(topic_id: str, m: Measurement) -> list[Message]:
    base = f"shellies/{topic_id}/emeter/{m.channel}"
    apparent = abs(m.power_w) / m.power_factor if m.power_factor else abs(m.power_w)
    reactive = math.sqrt(max(apparent ** 2 - m.power_w ** 2, 0.0))
    return [
        (f"{base}/power", _num(m.power_w, 2), False),
        (f"{base}/reactive_power", _num(reactive, 2), False),
        (f"{base}/pf", _num(m.power_factor, 2), False),
        (f"{base}/voltage", _num(m.voltage_v, 2), False),
        (f"{base}/current", _num(apparent / m.voltage_v if m.voltage_v else 0.0, 2), False),
        # watt-minutes since boot: resets on reboot, not a counter to rely on (as on the device)
        (f"{base}/energy", _num(m.session_wh * 60.0, 0), False),
        (f"{base}/returned_energy", _num(0.0, 0), False),
        (f"{base}/total", _num(m.energy_wh, 1), False),
        (f"{base}/total_returned", _num(m.energy_returned_wh, 1), False),
    ]


def _phases(m: Measurement) -> dict[str, float]:
    out: dict[str, float] = {}
    total_current = 0.0
    for phase, share in zip("abc", m.phase_split, strict=True):
        power = m.power_w * share
        voltage = m.voltage_v + {"a": 0.0, "b": 0.8, "c": -0.6}[phase]
        apparent = abs(power) / m.power_factor if m.power_factor else abs(power)
        current = apparent / voltage if voltage else 0.0
        total_current += current
        out.update({
            f"{phase}_current": round(current, 3), f"{phase}_voltage": round(voltage, 1),
            f"{phase}_act_power": round(power, 1), f"{phase}_aprt_power": round(apparent, 1),
            f"{phase}_pf": round(m.power_factor if power else 0.0, 2),
            f"{phase}_freq": round(m.frequency_hz, 1),
        })
    out["n_current"] = None  # type: ignore[assignment]  # no neutral CT fitted
    out["total_current"] = round(total_current, 3)
    out["total_act_power"] = round(m.power_w, 3)
    out["total_aprt_power"] = round(sum(out[f"{p}_aprt_power"] for p in "abc"), 3)
    return out


def gen2_em_status(m: Measurement) -> dict[str, object]:
    return {"id": 0, **_phases(m), "user_calibrated_phase": []}


def gen2_emdata_status(m: Measurement) -> dict[str, object]:
    data: dict[str, object] = {"id": 0}
    for phase, share in zip("abc", m.phase_split, strict=True):
        data[f"{phase}_total_act_energy"] = round(m.energy_wh * share, 2)
        data[f"{phase}_total_act_ret_energy"] = round(m.energy_returned_wh * share, 2)
    data["total_act"] = round(m.energy_wh, 2)
    data["total_act_ret"] = round(m.energy_returned_wh, 2)
    return data


def shelly_gen2(topic_id: str, m: Measurement) -> list[Message]:
    ts = round(m.ts_ms / 1000.0, 2)
    em, emdata = gen2_em_status(m), gen2_emdata_status(m)

    def notify(component: str, status: dict[str, object]) -> bytes:
        return orjson.dumps({"src": topic_id, "dst": f"{topic_id}/events",
                             "method": "NotifyStatus", "params": {"ts": ts, component: status}})

    return [
        (f"{topic_id}/events/rpc", notify("em:0", em), False),
        (f"{topic_id}/events/rpc", notify("emdata:0", emdata), False),
        (f"{topic_id}/status/em:0", orjson.dumps(em), False),
        (f"{topic_id}/status/emdata:0", orjson.dumps(emdata), False),
    ]


def tasmota_time(ts_ms: int, tz: str) -> str:
    """Tasmota's ``Time``: local time of the device, ISO without offset, whole seconds."""
    local = datetime.fromtimestamp(ts_ms // 1000, UTC).astimezone(ZoneInfo(tz))
    return local.strftime("%Y-%m-%dT%H:%M:%S")


def tasmota(topic_id: str, m: Measurement) -> list[Message]:
    apparent = abs(m.power_w) / m.power_factor if m.power_factor else abs(m.power_w)
    energy = {
        "TotalStartTime": "2024-03-01T10:00:00",
        "Total": round(m.energy_wh / 1000.0, 3),
        "Yesterday": round(m.yesterday_wh / 1000.0, 3),
        "Today": round(m.today_wh / 1000.0, 3),
        "Period": round(m.period_wh),
        "Power": round(m.power_w),
        "ApparentPower": round(apparent),
        "ReactivePower": round(math.sqrt(max(apparent ** 2 - m.power_w ** 2, 0.0))),
        "Factor": round(m.power_factor, 2),
        "Voltage": round(m.voltage_v),
        "Current": round(apparent / m.voltage_v if m.voltage_v else 0.0, 3),
    }
    payload = {"Time": tasmota_time(m.ts_ms, m.timezone), "ENERGY": energy}
    return [(f"tele/{topic_id}/SENSOR", orjson.dumps(payload), False)]


def emonhub(topic_id: str, m: Measurement) -> list[Message]:
    n = m.channel
    return [
        (f"emon/{topic_id}/P{n}", _num(m.power_w, 0), False),
        (f"emon/{topic_id}/E{n}", _num(m.energy_wh, 0), False),
        (f"emon/{topic_id}/vrms", _num(m.voltage_v, 2), False),
    ]


def emonhub_json(topic_id: str, m: Measurement) -> list[Message]:
    """emonhub's JSON variant (``node_JSON_enable``): one object on ``emon/<node>`` with the
    Unix ``time`` — the emonhub form that carries a timestamp (useful with ``--speed`` > 1)."""
    n = m.channel
    payload = {f"P{n}": round(m.power_w), f"E{n}": round(m.energy_wh),
               "vrms": round(m.voltage_v, 2), "time": round(m.ts_ms / 1000.0, 3)}
    return [(f"emon/{topic_id}", orjson.dumps(payload), False)]


#: decoder name in the registry → payload builder
FORMATS: dict[str, Callable[[str, Measurement], list[Message]]] = {
    "shelly-gen1": shelly_gen1,
    "shelly-gen2": shelly_gen2,
    "tasmota": tasmota,
    "emonhub": emonhub,
}
#: alternative builders a run can choose for a decoder (``--emonhub-format json``)
VARIANTS: dict[tuple[str, str], Callable[[str, Measurement], list[Message]]] = {
    ("emonhub", "json"): emonhub_json,
}

#: availability topics (as the broker's last will would publish them): (topic, online, offline)
AVAILABILITY: dict[str, Callable[[str], tuple[str, bytes, bytes]]] = {
    "shelly-gen1": lambda t: (f"shellies/{t}/online", b"true", b"false"),
    "shelly-gen2": lambda t: (f"{t}/online", b"true", b"false"),
    "tasmota": lambda t: (f"tele/{t}/LWT", b"Online", b"Offline"),
}


def device_channel(decoder: str, device_id: str) -> int:
    """The channel a registry device id names (``<id>:<N>``); 0 for Tasmota."""
    if decoder == "tasmota" or ":" not in device_id:
        return 0 if decoder != "emonhub" else 1
    return int(device_id.rsplit(":", 1)[1])
