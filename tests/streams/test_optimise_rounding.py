"""The file's 6 decimals: ``round_betas`` keeps Σ = 1 000 000 millionths every hour.

Property-based: any coefficients that sum to 1 per hour (with or without a floor) come out as
integers that sum to exactly 1 000 000, each within one millionth of nearest rounding and never
below the floor.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.energy.optimise import round_betas


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(1, 30), st.integers(0, 2**32 - 1),
       st.sampled_from([0.0, 0.001, 0.01, 0.0123457]))
def test_rounding_sums_to_one_every_hour(members: int, hours: int, seed: int,
                                         floor: float) -> None:
    rng = np.random.default_rng(seed)
    raw = rng.dirichlet(np.full(members, 0.3), size=hours).T  # spiky, like LP vertices
    room = 1.0 - members * floor
    if room < 0:
        return
    betas = floor + room * raw
    units = round_betas(betas, floor)
    assert units.dtype.kind == "i"
    assert (units.sum(axis=0) == 1_000_000).all()
    assert (np.abs(units - betas * 1_000_000) <= 1.0 + 1e-6).all()
    assert (units >= int(np.ceil(floor * 1_000_000 - 1e-6))).all()
