"""The worker's state as typed objects, and the compact, versioned codec of its changelogs.

Before this module every table value was a JSON dict or list read back by string keys
(``slot["cf"]``, ``latest[1]``), so a typo was a silent ``None`` and nothing said which shape a
value had. Now each table holds one type (:class:`Slot`, :class:`Latest`); the Faust tables use
the codec registered here (:data:`CODEC`) to write them to their changelog topics.

Changelog format, version 1: a JSON array ``[1, tag, …fields]`` (compact: a 15-minute slot of a
counter device is about 60 bytes). The leading version lets a worker of a later release recover
the tables written by this one: :func:`decode` dispatches on it, and versions it does not know
are refused loudly rather than misread. Values written by the release before (plain JSON:
``{"cf": …, "cl": …, "p": …}`` slots, ``[power, ts]`` latest values) still decode, so an
upgrade needs no changelog migration. Any other JSON value (the ``pending``/``emitted`` tables
keep plain numbers and lists; ``watermarks`` held plain numbers before :class:`Watermark`)
passes through unchanged.

Tag ``w`` (:class:`Watermark`) was added later within version 1 (additive: every value written
before still decodes the same; a worker of the release before refuses a ``w`` value as an
unknown type rather than misreading it).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

import orjson
from faust.serializers import codecs

STATE_VERSION = 1
CODEC = "ioe-state"

#: a counter sample: (ts_ms, forward Wh, returned Wh or None)
Counter = tuple[int, float, float | None]
#: a power sample: (ts_ms, W)
Power = tuple[int, float]


@dataclass(slots=True)
class Slot:
    """One device's samples in one 15-minute slot: the first and last counter sample (all a
    counter difference at the slot bounds needs) and, for devices without a counter, every
    power sample, sorted by time with one sample per timestamp (SET semantics: adding a
    sample already seen changes nothing)."""

    first: Counter | None = None
    last: Counter | None = None
    power: list[Power] = field(default_factory=list)

    TAG = "s"

    def add_counter(self, sample: Counter) -> tuple[bool, bool, bool]:
        """(changed, first changed, last changed): only the first and the last count."""
        first_changed = last_changed = False
        first, last = self.first, self.last
        if first is None or sample[0] < first[0] or (sample[0] == first[0] and sample != first):
            self.first = sample
            first_changed = True
        if last is None or sample[0] > last[0] or (sample[0] == last[0] and sample != last):
            self.last = sample
            last_changed = True
        return first_changed or last_changed, first_changed, last_changed

    def add_power(self, sample: Power) -> tuple[bool, bool, bool]:
        """(changed, first changed, last changed); O(log n) to find the place, not a copy and
        sort of the whole quarter per reading (that was quadratic in readings per quarter).

        A sample between the first and the last changes only this quarter's own energy (the
        release before dropped it: it returned early without storing the slot, so a power
        sample arriving out of order was lost)."""
        power = self.power
        i = bisect_left(power, (sample[0],))
        if i < len(power) and power[i][0] == sample[0]:
            if power[i] == sample:
                return False, False, False
            power[i] = sample
        else:
            power.insert(i, sample)
        return True, i == 0, i == len(power) - 1

    def last_ts(self) -> int | None:
        """The newest sample, counter or power (None when the slot holds none)."""
        stamps = [s[0] for s in (self.last, self.power[-1] if self.power else None) if s]
        return max(stamps) if stamps else None

    def edge(self, *, last: bool) -> Slot:
        """Only the sample next to an interval of a neighbouring slot (before it: its last)."""
        if last:
            return Slot(first=None, last=self.last, power=self.power[-1:])
        return Slot(first=self.first, last=None, power=self.power[:1])

    def encode_fields(self) -> list[Any]:
        return [self.first, self.last, self.power]

    @classmethod
    def decode_fields(cls, first: Any, last: Any, power: Any) -> Slot:
        return cls(_counter(first), _counter(last), [(int(t), float(p)) for t, p in power])

    @classmethod
    def from_legacy(cls, data: dict[str, Any]) -> Slot:
        """A slot as the release before wrote it: ``{"cf": …, "cl": …, "p": [[ts, W], …]}``."""
        return cls.decode_fields(data.get("cf"), data.get("cl"), data.get("p") or [])


@dataclass(frozen=True, slots=True)
class Latest:
    """A device's newest live power (the live view's input)."""

    power_w: float
    ts_ms: int

    TAG = "l"

    def encode_fields(self) -> list[Any]:
        return [self.power_w, self.ts_ms]

    @classmethod
    def decode_fields(cls, power_w: Any, ts_ms: Any) -> Latest:
        return cls(float(power_w), int(ts_ms))


@dataclass(frozen=True, slots=True)
class Watermark:
    """A community's clock: its newest event time and the time of its first data.

    ``first_ms`` is the earliest data (a sample's time, the start of an official interval)
    ever seen for the community: intervals that end at or before its quarter hold no data of
    anyone, so :class:`streams.clock.Windows` never emits them (they would be 0 Wh,
    ``complete=0`` rows for every member, which billing had to filter). ``None``: no data yet
    (only readings without energy or power). A ``watermarks`` value of the release before is a
    plain number, read by the clock as a watermark whose first data is unknown.
    """

    ts_ms: int
    first_ms: int | None = None

    TAG = "w"

    def encode_fields(self) -> list[Any]:
        return [self.ts_ms, self.first_ms]

    @classmethod
    def decode_fields(cls, ts_ms: Any, first_ms: Any = None) -> Watermark:
        return cls(int(ts_ms), None if first_ms is None else int(first_ms))


def _counter(value: Any) -> Counter | None:
    if value is None:
        return None
    ts, forward, returned = value
    return (int(ts), float(forward), None if returned is None else float(returned))


_TYPES: dict[str, Any] = {Slot.TAG: Slot, Latest.TAG: Latest, Watermark.TAG: Watermark}


def encode(value: Any) -> bytes:
    """A table value as changelog bytes (typed values tagged and versioned)."""
    if isinstance(value, Slot | Latest | Watermark):
        return orjson.dumps([STATE_VERSION, value.TAG, *value.encode_fields()])
    return orjson.dumps(value)


def decode(raw: bytes) -> Any:
    """Changelog bytes as the table value; see the module docstring for the formats."""
    return upgrade(orjson.loads(raw))


def upgrade(data: Any) -> Any:
    """A decoded JSON value as the table value (typed where it is a typed value)."""
    if isinstance(data, list) and len(data) >= 2 and isinstance(data[1], str) \
            and isinstance(data[0], int) and not isinstance(data[0], bool):
        if data[0] != STATE_VERSION:
            raise ValueError(f"state version {data[0]} is newer than this worker knows "
                             f"({STATE_VERSION}): upgrade the worker")
        kind = _TYPES.get(data[1])
        if kind is None:
            raise ValueError(f"unknown state type {data[1]!r}")
        return kind.decode_fields(*data[2:])
    if isinstance(data, dict) and ("cf" in data or "cl" in data or "p" in data):
        return Slot.from_legacy(data)
    return data


def legacy_latest(value: Any) -> Latest | None:
    """A ``latest`` value of either release ([power, ts] before, :class:`Latest` now)."""
    if value is None or isinstance(value, Latest):
        return value
    power, ts = value
    return Latest(float(power), int(ts))


class StateCodec(codecs.Codec):
    """The Faust codec of the worker's tables (registered as :data:`CODEC`)."""

    def _dumps(self, obj: Any) -> bytes:
        return encode(obj)

    def _loads(self, s: bytes) -> Any:
        return decode(s)


codecs.register(CODEC, StateCodec())
