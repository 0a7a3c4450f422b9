"""A charge point that speaks real OCPP 1.6J over a real websocket, built with the ``ocpp``
library's client side — the stand-in for a wallbox in the OCPP tests.

Faithful where the central system depends on it: it boots, reports its status, sends meter
values and transactions; it keeps the charging profiles it is given (same id replaces, as
OCPP 1.6 §3.13.3 says) and answers ``GetCompositeSchedule`` from them, honouring each
profile's ``validFrom``/``validTo``, ``startSchedule`` and ``duration``, the highest stack level
winning, and its own hardware maximum; ``ClearChargingProfile`` removes by id. Every request
the central system sends is kept in ``received``.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call
from ocpp.v16 import call_result as result
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

VOLTAGE_V = 230.0


def iso(ts_ms: float) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


class _Point(ChargePoint):
    def __init__(self, cp_id: str, connection: ClientConnection, sim: SimulatedCharger) -> None:
        super().__init__(cp_id, connection, response_timeout=10)
        self.sim = sim

    @on(Action.set_charging_profile)
    def on_set(self, connector_id: int, cs_charging_profiles: dict[str, Any]
               ) -> result.SetChargingProfile:
        self.sim.received.append(("SetChargingProfile", connector_id, cs_charging_profiles))
        if cs_charging_profiles["charging_profile_purpose"] not in ("TxDefaultProfile",
                                                                    "TxProfile"):
            return result.SetChargingProfile(status="Rejected")
        self.sim.profiles[cs_charging_profiles["charging_profile_id"]] = (connector_id,
                                                                          cs_charging_profiles)
        return result.SetChargingProfile(status="Accepted")

    @on(Action.clear_charging_profile)
    def on_clear(self, id: int | None = None, **kwargs: Any) -> result.ClearChargingProfile:
        self.sim.received.append(("ClearChargingProfile", id, kwargs))
        found = self.sim.profiles.pop(id, None) if id is not None else None
        return result.ClearChargingProfile(status="Accepted" if found else "Unknown")

    @on(Action.get_composite_schedule)
    def on_composite(self, connector_id: int, duration: int, charging_rate_unit: str = "A"
                     ) -> result.GetCompositeSchedule:
        self.sim.received.append(("GetCompositeSchedule", connector_id,
                                  {"duration": duration, "unit": charging_rate_unit}))
        now = time.time() * 1000
        limit = self.sim.limit_at(now, charging_rate_unit, connector_id)
        if limit is None:
            return result.GetCompositeSchedule(status="Rejected")
        return result.GetCompositeSchedule(
            status="Accepted", connector_id=connector_id, schedule_start=iso(now),
            charging_schedule={"duration": duration, "start_schedule": iso(now),
                               "charging_rate_unit": charging_rate_unit,
                               "charging_schedule_period": [{"start_period": 0,
                                                             "limit": limit}]})


class SimulatedCharger:
    """One wallbox on its own event loop thread; the methods are synchronous for the tests."""

    def __init__(self, cp_id: str, *, phases: int = 1, hardware_max_a: float = 32.0) -> None:
        self.cp_id = cp_id
        self.phases = phases
        self.hardware_max_a = hardware_max_a
        self.received: list[tuple[str, Any, Any]] = []
        self.profiles: dict[int, tuple[int, dict[str, Any]]] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.point: _Point | None = None
        self._serving: Any = None

    def _do(self, coro: Coroutine[Any, Any, Any], timeout: float = 20) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # -- the charger's side of the link --------------------------------------------------------
    def connect(self, url: str, boot: bool = True, key: str | None = None) -> str | None:
        """Open the websocket (with HTTP Basic ``cp_id:key`` when a key is given: security
        profile 1), boot and report Available; the boot status (or None)."""
        headers = {"Authorization": "Basic " + base64.b64encode(
            f"{self.cp_id}:{key}".encode()).decode()} if key is not None else None

        async def go() -> str | None:
            connection = await connect(f"{url.rstrip('/')}/{self.cp_id}",
                                       subprotocols=[Subprotocol("ocpp1.6")],
                                       additional_headers=headers)
            self.point = _Point(self.cp_id, connection, self)
            self._serving = asyncio.ensure_future(self.point.start())
            if not boot:
                return None
            answer = await self.point.call(call.BootNotification(
                charge_point_model="Sim Wallbox", charge_point_vendor="IoE Test"))
            await self.point.call(call.StatusNotification(
                connector_id=1, error_code="NoError", status="Available"))
            return str(answer.status)
        return self._do(go())

    def send(self, payload: Any) -> Any:
        assert self.point is not None
        return self._do(self.point.call(payload))

    def disconnect(self) -> None:
        async def go() -> None:
            if self.point is not None:
                await self.point._connection.close()
            if self._serving is not None:
                self._serving.cancel()
            self.point = None
        self._do(go())

    def close(self) -> None:
        if self.point is not None:
            self.disconnect()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    # -- the charger's physics -----------------------------------------------------------------
    def set_profiles(self) -> list[dict[str, Any]]:
        return [p for kind, _, p in self.received if kind == "SetChargingProfile"]

    def limit_at(self, ts_ms: float, unit: str = "A", connector: int = 1) -> float | None:
        """What this charger allows at ``ts_ms`` from its profiles (None: no profile in force,
        it charges at its hardware maximum)."""
        best: tuple[int, float] | None = None
        for profile_connector, profile in self.profiles.values():
            if profile_connector not in (0, connector):
                continue
            if "valid_from" in profile and ts_ms < ms(profile["valid_from"]):
                continue
            if "valid_to" in profile and ts_ms >= ms(profile["valid_to"]):
                continue
            schedule = profile["charging_schedule"]
            start = ms(schedule["start_schedule"])
            elapsed_s = (ts_ms - start) / 1000
            if elapsed_s < 0 or ("duration" in schedule and elapsed_s >= schedule["duration"]):
                continue
            periods = [p for p in schedule["charging_schedule_period"]
                       if p["start_period"] <= elapsed_s]
            if not periods:
                continue
            period = max(periods, key=lambda p: p["start_period"])
            phases = period.get("number_phases", self.phases)
            amps = float(period["limit"]) if schedule["charging_rate_unit"] == "A" else (
                float(period["limit"]) / (VOLTAGE_V * phases))
            if best is None or profile["stack_level"] > best[0]:
                best = (profile["stack_level"], amps)
        if best is None:
            return None
        amps = min(best[1], self.hardware_max_a)
        return round(amps if unit == "A" else amps * VOLTAGE_V * self.phases, 1)
