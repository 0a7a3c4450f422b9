"""Physical power limits of a device, from the registry (shared by range and counter checks)."""

from __future__ import annotations

from ioe.registry import Community, Device

#: roles whose positive power is drawn from the grid and bounded by the member's contract
CONTRACT_ROLES = ("consumption", "grid")


def power_limit_w(device: Device, community: Community) -> float | None:
    """Largest power the device can physically show (W), before any margin; None = unknown."""
    if device.role in CONTRACT_ROLES and device.member_id:
        member = community.member(device.member_id)
        if member is not None:
            return member.contracted_power_kw * 1000.0
    if device.rated_power_w:
        return float(device.rated_power_w)
    if device.role == "generation" and device.plant_id:
        plant = next((p for p in community.plants if p.id == device.plant_id), None)
        if plant is not None:
            return plant.peak_power_kw * 1000.0
    return None


def rated_w(device: Device, community: Community) -> float | None:
    """Rating used to normalise generation for peer comparison (rated AC, else plant share)."""
    if device.rated_power_w:
        return float(device.rated_power_w)
    if device.plant_id:
        plant = next((p for p in community.plants if p.id == device.plant_id), None)
        if plant is not None:
            siblings = [d for d in community.devices
                        if d.plant_id == plant.id and d.role == "generation"
                        and d.protocol.get("type") != "datadis"]
            return plant.peak_power_kw * 1000.0 / max(len(siblings), 1)
    return None
