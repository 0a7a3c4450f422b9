"""Energy of one interval from a device's readings (DESIGN.md §4).

Counters are the truth: the energy of ``[start, end)`` is the cumulative counter at ``end`` minus
the counter at ``start``, each linearly interpolated between the readings around the bound.
Power is integrated (trapezoids) only for devices that have no counter.

Two rules shape every function here:

* **never negative from a counter** — a counter that goes backwards was reset, replaced or
  wrapped; the step backwards is not energy;
* **never invent energy** — when the readings do not cover the interval (no reading at or before
  ``start`` or at or after ``end``, a gap longer than ``max_gap_ms``, a reset inside it) the
  result says ``complete=False`` and ``wh`` holds only the energy actually *observed* inside
  the interval (a lower bound), never an extrapolation across the hole.

Intervals are half-open ``[start_ms, end_ms)`` in UTC epoch milliseconds, so consecutive
intervals add up exactly to the energy of their union.

All functions are pure and take plain ``(ts_ms, value)`` tuples sorted by ``ts_ms`` (unsorted
input is sorted; non-finite values are ignored), so the stream worker and the tests share them.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MS_PER_HOUR = 3_600_000.0

Sample = tuple[int, float]


@dataclass(frozen=True)
class IntervalEnergy:
    """Energy of one interval, whether the readings fully covered it, and how it was obtained.

    ``method`` is ``"counter"`` (cumulative counter), ``"power"`` (integrated power),
    ``"interval"`` (closed-interval energies such as Datadis hours) or ``"none"`` (no usable
    reading: ``wh`` is 0 and ``complete`` is False).
    """

    wh: float
    complete: bool
    method: str


NONE = IntervalEnergy(0.0, False, "none")


# -- helpers -----------------------------------------------------------------------------------
def _clean(samples: Iterable[Sample]) -> list[Sample]:
    """Finite samples sorted by time (stable, so equal timestamps keep their arrival order)."""
    out = [(int(ts), float(v)) for ts, v in samples if v is not None and math.isfinite(v)]
    if any(out[i][0] > out[i + 1][0] for i in range(len(out) - 1)):
        out.sort(key=lambda s: s[0])
    return out


def _window(samples: list[Sample], start_ms: int, end_ms: int) -> list[Sample]:
    """The samples that matter for ``[start, end)``: the last one at or before ``start``, all
    inside, and the first one at or after ``end``."""
    times = [s[0] for s in samples]
    lo = bisect_right(times, start_ms) - 1  # the last of the samples with ts <= start
    hi = bisect_right(times, end_ms)  # past every sample with ts <= end
    if not (hi and times[hi - 1] == end_ms):
        hi += 1  # no sample exactly at end: take the first one after it
    return samples[max(lo, 0):min(hi, len(samples))]


def _overlap(a_ts: int, b_ts: int, start_ms: int, end_ms: int) -> tuple[int, int] | None:
    lo, hi = max(a_ts, start_ms), min(b_ts, end_ms)
    return (lo, hi) if lo < hi else None


def _lerp(a: Sample, b: Sample, t: int) -> float:
    if b[0] == a[0]:
        return b[1]
    return a[1] + (b[1] - a[1]) * (t - a[0]) / (b[0] - a[0])


def _brackets(window: list[Sample], start_ms: int, end_ms: int) -> bool:
    return bool(window) and window[0][0] <= start_ms and window[-1][0] >= end_ms


# -- counters ----------------------------------------------------------------------------------
def counter_at(samples: Sequence[Sample], t_ms: int) -> float | None:
    """Cumulative counter at instant ``t_ms``, linearly interpolated between the readings around
    it; ``None`` when no reading is at or before ``t`` or none at or after it, and when the
    counter went backwards between those two readings (the value at ``t`` is then unknowable).

    With several readings at exactly ``t`` the last one wins (the value *after* ``t``), which
    keeps half-open intervals additive.
    """
    clean = _clean(samples)
    times = [s[0] for s in clean]
    right = bisect_right(times, t_ms)
    if right and times[right - 1] == t_ms:
        return clean[right - 1][1]
    if right == 0 or right == len(clean):
        return None
    a, b = clean[right - 1], clean[right]
    if b[1] < a[1]:
        return None
    return _lerp(a, b, t_ms)


def counter_energy(samples: Sequence[Sample], start_ms: int, end_ms: int, *,
                   max_gap_ms: int | None = None) -> IntervalEnergy:
    """Energy (Wh) of ``[start_ms, end_ms)`` from a cumulative counter (Wh).

    Walks the consecutive reading pairs that overlap the interval; each pair contributes its
    counter increase times the fraction of the pair's span inside the interval (exactly the
    difference of the interpolated counter at both bounds when nothing goes wrong).

    Resets, replacements and wraps (a pair whose second value is *lower*) contribute nothing:
    the energy before the reset is ``last reading before the reset − counter at start`` and the
    energy after it is counted from the first reading after the reset, i.e. the post-reset
    counter is taken to *start at that reading's value*. Whatever was consumed between the last
    pre-reset and the first post-reset reading is unobserved — assuming the new counter started
    at 0 would invent energy for a replaced meter that arrives with a non-zero register — so the
    interval is marked incomplete.

    ``complete`` is False when no reading brackets a bound, when a reading pair overlapping the
    interval is more than ``max_gap_ms`` apart (that pair contributes only if it lies entirely
    inside the interval, where its difference is measured, not interpolated), or on a reset.
    """
    if end_ms <= start_ms:
        return IntervalEnergy(0.0, True, "counter")
    window = _window(_clean(samples), start_ms, end_ms)
    if len(window) < 2:
        return NONE if not window else IntervalEnergy(0.0, False, "counter")
    complete = _brackets(window, start_ms, end_ms)
    wh = 0.0
    for a, b in zip(window, window[1:], strict=False):
        if b[0] == a[0]:
            # two readings at one instant: a step at ts belongs to (start, end] (the window
            # starts at the last reading at start); a step backwards loses no time, only count
            if a[0] > start_ms and b[1] > a[1]:
                wh += b[1] - a[1]
            continue
        span = _overlap(a[0], b[0], start_ms, end_ms)
        if span is None:
            continue
        if b[1] < a[1]:
            complete = False
            continue
        if max_gap_ms is not None and b[0] - a[0] > max_gap_ms:
            complete = False
            if not (a[0] >= start_ms and b[0] <= end_ms):
                continue
        lo, hi = span
        wh += (b[1] - a[1]) * (hi - lo) / (b[0] - a[0])
    return IntervalEnergy(wh, complete, "counter")


# -- power -------------------------------------------------------------------------------------
def _segment_wh(p0: float, p1: float, dt_ms: int, part: str) -> float:
    """Energy of a linear power segment from ``p0`` to ``p1`` W over ``dt_ms``.

    ``part`` selects the signed net (``"net"``), only the positive part (``"positive"``, e.g.
    import of a bidirectional meter) or the magnitude of the negative part (``"negative"``,
    export); a segment crossing zero is split at the crossing.
    """
    if part == "net":
        return (p0 + p1) / 2.0 * dt_ms / MS_PER_HOUR
    sign = 1.0 if part == "positive" else -1.0
    q0, q1 = sign * p0, sign * p1
    if q0 >= 0 and q1 >= 0:
        return (q0 + q1) / 2.0 * dt_ms / MS_PER_HOUR
    if q0 <= 0 and q1 <= 0:
        return 0.0
    # one end positive, the other negative: triangle up to/from the zero crossing
    positive, negative = (q0, q1) if q0 > 0 else (q1, q0)
    fraction = positive / (positive - negative)
    return positive / 2.0 * dt_ms * fraction / MS_PER_HOUR


PARTS = ("net", "positive", "negative")


def power_energy(samples: Sequence[Sample], start_ms: int, end_ms: int, *,
                 max_gap_ms: int, part: str = "net") -> IntervalEnergy:
    """Energy (Wh) of ``[start_ms, end_ms)`` by trapezoidal integration of power (W).

    Each reading pair overlapping the interval is clipped to the bounds (power linearly
    interpolated at the clip points) and integrated. A pair more than ``max_gap_ms`` apart is
    a hole: it contributes nothing and marks the interval incomplete, as does a missing reading
    at or before ``start`` or at or after ``end``. ``part`` is ``"net"`` (signed),
    ``"positive"`` or ``"negative"`` (magnitude of the negative part, e.g. a meter's export).
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, not {part!r}")
    if end_ms <= start_ms:
        return IntervalEnergy(0.0, True, "power")
    window = _window(_clean(samples), start_ms, end_ms)
    if len(window) < 2:
        return NONE if not window else IntervalEnergy(0.0, False, "power")
    complete = _brackets(window, start_ms, end_ms)
    wh = 0.0
    for a, b in zip(window, window[1:], strict=False):
        span = _overlap(a[0], b[0], start_ms, end_ms)
        if span is None:
            continue
        if b[0] - a[0] > max_gap_ms:
            complete = False
            continue
        lo, hi = span
        wh += _segment_wh(_lerp(a, b, lo), _lerp(a, b, hi), hi - lo, part)
    return IntervalEnergy(wh, complete, "power")


# -- closed intervals (Datadis hours, quarter-hours) -------------------------------------------
def interval_energy(records: Iterable[tuple[int, int, float]], start_ms: int,
                    end_ms: int) -> IntervalEnergy:
    """Energy of ``[start_ms, end_ms)`` from closed-interval records ``(end_ts_ms, interval_s,
    wh)`` (the reading contract's ``interval_energy_wh`` ending at ``ts_ms``).

    Only records lying entirely inside the bounds count (an hour is never split into quarters:
    that would invent a profile). Complete when they cover the interval exactly once.
    """
    wh = 0.0
    covered = 0
    seen: set[tuple[int, int]] = set()
    partial = False
    for end_ts, interval_s, value in records:
        begin = end_ts - interval_s * 1000
        if begin >= start_ms and end_ts <= end_ms:
            if (begin, end_ts) in seen:
                continue  # a replayed record is the same energy, not more
            seen.add((begin, end_ts))
            wh += value
            covered += end_ts - begin
        elif begin < end_ms and end_ts > start_ms:
            partial = True
    if not seen:
        return NONE
    return IntervalEnergy(wh, covered == end_ms - start_ms and not partial, "interval")


def device_energy(counter_samples: Sequence[Sample], power_samples: Sequence[Sample],
                  start_ms: int, end_ms: int, *, max_gap_ms: int) -> IntervalEnergy:
    """The counter when the device has one, integrated power otherwise (DESIGN.md §4)."""
    if counter_samples:
        return counter_energy(counter_samples, start_ms, end_ms, max_gap_ms=max_gap_ms)
    if power_samples:
        return power_energy(power_samples, start_ms, end_ms, max_gap_ms=max_gap_ms)
    return NONE


# -- buckets -----------------------------------------------------------------------------------
def bucket_start(ts_ms: int, step_s: int) -> int:
    """Start of the ``step_s`` bucket containing ``ts_ms`` (aligned to the UTC epoch, which for
    15-minute and 1-hour steps is also local-time aligned in Spain's whole-hour offsets)."""
    step = step_s * 1000
    return ts_ms - ts_ms % step


def interval_buckets(start_ms: int, end_ms: int, step_s: int) -> list[int]:
    """Starts of the aligned ``step_s`` buckets that overlap ``[start_ms, end_ms)``."""
    if end_ms <= start_ms:
        return []
    step = step_s * 1000
    return list(range(bucket_start(start_ms, step_s), end_ms, step))
