"""Shared data of the control tests: a small community with an inverter, relays of three
families, an EV charger, and members who own (or do not own) them."""

from __future__ import annotations

from typing import Any

import yaml

from ioe.messages import LiveCommunity, LiveMember
from ioe.registry import Registry, parse_registry

COMMUNITY = "ce-ctl"
CUPS = ("ES0021380404050463BV", "ES0021310451747942WF")


def registry_document(community: str = COMMUNITY, inverter_port: int = 5020,
                      extra: list[dict[str, Any]] | None = None,
                      betas: tuple[float, float] | None = None) -> dict[str, Any]:
    """The control tests' community; ``betas`` adds a static coefficient schedule for m1, m2
    (without one every member's share β is 0, so no member has a surplus)."""
    schedules = ([{"effective_from": "2020-01-01",
                   "static": {CUPS[0]: betas[0], CUPS[1]: betas[1]}}] if betas else [])
    return {"communities": [{
        "id": community, "name": "Control test", "timezone": "Europe/Madrid",
        "location": {"latitude": 39.5, "longitude": -0.4},
        "members": [{"id": "m1", "cups": CUPS[0], "contracted_power_kw": 4.6},
                    {"id": "m2", "cups": CUPS[1], "contracted_power_kw": 3.45}],
        "plants": [{"id": "plant-1", "peak_power_kw": 10}],
        "devices": [
            {"id": "inv-1", "role": "generation", "plant": "plant-1", "rated_power_w": 10000,
             "protocol": {"type": "modbus", "host": "127.0.0.1", "port": inverter_port,
                          "unit": 1, "map": "sunspec"}},
            {"id": f"{community}-boiler:0", "role": "consumption", "member": "m1",
             "protocol": {"type": "mqtt", "decoder": "shelly-gen1",
                          "topic_id": f"{community}-boiler", "controllable": True}},
            {"id": f"{community}-plug", "role": "consumption", "member": "m2",
             "protocol": {"type": "mqtt", "decoder": "tasmota",
                          "topic_id": f"{community}-plug", "controllable": True}},
            {"id": f"{community}-plus:0", "role": "consumption", "member": "m2",
             "protocol": {"type": "mqtt", "decoder": "shelly-gen2",
                          "topic_id": f"{community}-plus"}},  # not marked controllable
            {"id": "ev-1", "role": "consumption", "member": "m1",
             "protocol": {"type": "ocpp", "charge_point": "CP-1", "max_current_a": 16,
                          "controllable": True}},
            {"id": "meter-m2", "role": "consumption", "member": "m2",
             "protocol": {"type": "mqtt", "decoder": "emonhub", "topic_id": "m2"}},
            *(extra or []),
        ],
        "coefficients": schedules,
    }]}


def make_registry(**kwargs: Any) -> Registry:
    return parse_registry(registry_document(**kwargs))


def write_registry(path: Any, **kwargs: Any) -> Any:
    path.write_text(yaml.safe_dump(registry_document(**kwargs)))
    return path


def member(surplus_w: float, ts_ms: int, member_id: str = "m1", stale: bool = False,
           community: str = COMMUNITY) -> LiveMember:
    return LiveMember(community, member_id, ts_ms, 0.5, 3000.0, 1500.0, 800.0, 700.0,
                      surplus_w, 0.0, stale)


def community_live(surplus_w: float, ts_ms: int, community: str = COMMUNITY) -> LiveCommunity:
    return LiveCommunity(community, ts_ms, 12000.0, 3000.0, 3000.0, surplus_w, 0.0, 2, 2)
