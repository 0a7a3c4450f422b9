"""Counter problems: cumulative energy counters going backwards, or jumping impossibly.

Backwards steps are classified so the operator knows what happened and the energy path knows
no energy was lost: ``reset`` (back to ~0: firmware reset, meter replaced by a new one),
``wrap`` (the old value sat just under a register modulus), ``replacement`` (a different,
non-zero counter appeared) and plain ``backwards``. A forward step whose energy over the elapsed
time implies more power than the device can deliver is a ``jump`` (scaling change, bad read).
Both are instantaneous events: the alarm opens on the event and closes after a clean period.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ioe.reading import Reading
from streams.anomalies.config import CounterConfig
from streams.anomalies.lifecycle import CLEAR, Condition

KIND_BACKWARDS = "counter_backwards"
KIND_JUMP = "counter_jump"
COUNTERS = ("energy_wh", "energy_returned_wh")
SEVERITY_BY_REASON = {"reset": "info", "wrap": "info", "replacement": "warning",
                      "backwards": "warning"}


@dataclass
class CounterState:
    #: counter name -> [ts_ms, value] of the last accepted reading
    last: dict[str, list[float]] = field(default_factory=dict)


def classify_backwards(cfg: CounterConfig, old: float, new: float) -> str:
    for modulus in cfg.wrap_moduli_wh:
        if modulus * (1 - cfg.wrap_margin) <= old <= modulus and new < modulus * cfg.wrap_margin:
            return "wrap"
    if new <= max(old * cfg.reset_fraction, cfg.reset_floor_wh):
        return "reset"
    if new < old * 0.5:
        return "replacement"
    return "backwards"


def check(cfg: CounterConfig, state: CounterState, reading: Reading,
          limit_w: float | None) -> tuple[Condition | None, Condition | None]:
    """(backwards condition, jump condition); None = not evaluated (no counter)."""
    backwards: Condition | None = None
    jump: Condition | None = None
    for name in COUNTERS:
        value = getattr(reading, name)
        if value is None:
            continue
        previous = state.last.get(name)
        if previous is not None and reading.ts_ms <= previous[0]:
            continue  # duplicate or out-of-order reading: not a counter event
        state.last[name] = [reading.ts_ms, value]
        if previous is None:
            backwards = backwards or CLEAR
            jump = jump or CLEAR
            continue
        old_ts, old = previous
        delta = value - old
        if delta < -cfg.backwards_tolerance_wh:
            reason = classify_backwards(cfg, old, value)
            backwards = Condition(True, SEVERITY_BY_REASON[reason], {
                "counter": name, "reason": reason, "old_wh": old, "new_wh": value,
                "old_ts_ms": int(old_ts)})
            jump = jump or CLEAR
            continue
        backwards = backwards or CLEAR
        dt_h = (reading.ts_ms - old_ts) / 3_600_000
        limit = (limit_w or cfg.default_limit_w) * cfg.jump_margin
        implied_w = delta / dt_h
        if delta > cfg.min_jump_wh and implied_w > limit:
            severity = "critical" if implied_w > 10 * limit else "warning"
            jump = Condition(True, severity, {
                "counter": name, "delta_wh": delta, "dt_s": dt_h * 3600,
                "implied_w": implied_w, "limit_w": limit})
        else:
            jump = jump if jump is not None and jump.active else CLEAR
    return backwards, jump
