"""One member, one interval: how the assigned share of the plant meets the member's demand.

DESIGN.md §1. Netting happens only inside one member and one interval, so these functions take
exactly one member-interval and know nothing about neighbours or other hours. The same formulas
serve energy (Wh, settlement) and power (W, live view).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Split:
    """A = SC + S and C = SC + I hold by construction (see :func:`split`)."""

    assigned: float
    consumption: float
    self_consumed: float
    surplus: float
    grid_import: float


def split(beta: float, generation: float, consumption: float) -> Split:
    """Share ``beta`` of the community's net ``generation`` against one member's ``consumption``.

    Works for Wh and for W alike. Negative net generation (the plant's own night consumption)
    assigns nothing: a member is never charged for the plant's standby draw through β.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"coefficient {beta} outside 0…1")
    if consumption < 0:
        raise ValueError(f"consumption {consumption} is negative")
    assigned = beta * max(generation, 0.0)
    self_consumed = min(assigned, consumption)
    return Split(
        assigned=assigned,
        consumption=consumption,
        self_consumed=self_consumed,
        surplus=assigned - self_consumed,
        grid_import=consumption - self_consumed,
    )
