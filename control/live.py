"""The live state rules read: the latest member and community values of one community.

Folded from ``ioe.live`` messages (the worker's output), so the rules see exactly what the
dashboards show; a value older than ``max_age_s`` counts as unknown and no rule acts on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ioe.messages import LiveAlarm, LiveCommunity, LiveMember, LiveMessage


@dataclass(frozen=True)
class LiveState:
    community_id: str
    members: dict[str, LiveMember] = field(default_factory=dict)
    community: LiveCommunity | None = None

    def apply(self, message: LiveMessage) -> LiveState:
        """A new state with ``message`` folded in (other communities' messages are ignored)."""
        if isinstance(message, LiveAlarm):
            return self
        if message.community_id != self.community_id:
            return self
        if isinstance(message, LiveMember):
            known = self.members.get(message.member_id)
            if known is not None and known.ts_ms > message.ts_ms:
                return self
            return replace(self, members={**self.members, message.member_id: message})
        if self.community is not None and self.community.ts_ms > message.ts_ms:
            return self
        return replace(self, community=message)

    def member_surplus_w(self, member_id: str, now_ms: int, max_age_s: float) -> float | None:
        member = self.members.get(member_id)
        if member is None or member.stale or now_ms - member.ts_ms > max_age_s * 1000:
            return None
        return member.surplus_w

    def community_export_w(self, now_ms: int, max_age_s: float) -> float | None:
        """The community's live surplus (what leaves for the grid), W."""
        community = self.community
        if community is None or now_ms - community.ts_ms > max_age_s * 1000:
            return None
        return community.surplus_w

    def generator_power_w(self, device_id: str, now_ms: int, max_age_s: float) -> float | None:
        """One inverter's live output, W (None: unknown, stale or too old)."""
        community = self.community
        if community is None:
            return None
        generator = community.generators.get(device_id)
        if (generator is None or generator.stale or generator.power_w is None
                or generator.ts_ms is None or now_ms - generator.ts_ms > max_age_s * 1000):
            return None
        return generator.power_w

    def plant_power_w(self, plant_id: str, now_ms: int, max_age_s: float) -> float | None:
        community = self.community
        if community is None:
            return None
        plant = community.plants.get(plant_id)
        if plant is None or plant.ts_ms is None or now_ms - plant.ts_ms > max_age_s * 1000:
            return None
        return plant.power_w
