"""β applied in one place: each member's share of the community's generation, in W or in Wh.

The live view (power, now) and the interval balances (energy, one interval) used to look up the
coefficients and apply them in two places, one of which multiplied β itself; a change of rule
(the clamp of a negative net generation, DESIGN.md §1 and docs/design-notes.md) had to be made
twice. Both now go through :func:`coefficients` (the lookup, once per community and instant)
and :func:`member_split` (which always goes through :func:`streams.energy.balance.split`).
Pure: no I/O, no clock.
"""

from __future__ import annotations

from ioe.registry import Community
from streams.energy.balance import Split, split


def coefficients(community: Community, ts_ms: int) -> dict[str, float]:
    """member id → β at ``ts_ms`` (an interval's start for balances, "now" for the live view)."""
    return {m.id: community.coefficient(m.id, ts_ms) for m in community.members}


def member_split(beta: float, generation: float | None, consumption: float | None
                 ) -> Split | None:
    """The member's split, or None when the generation is unknown. An unknown consumption
    still has an assigned share (``consumption`` 0 here: the caller reports the other terms
    as unknown)."""
    if generation is None:
        return None
    return split(beta, generation, 0.0 if consumption is None else consumption)
