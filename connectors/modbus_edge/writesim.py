"""Simulated devices that accept writes: a pymodbus server whose registers can be set, and an
inverter that behaves like one (limit, enable flag, revert timer).

Why not the plain :class:`SimServer`: it copies its image into every answer, so a write would be
undone by the next read. Here a write lands in the image (through an ``on_write`` hook that may
refuse it, like a read-only register on a real device), and :class:`SunSpecInverter` reacts as
model 123 says: the output follows ``WMaxLimPct`` only while ``WMaxLim_Ena`` is 1, and the limit
is dropped by the inverter itself ``WMaxLimPct_RvrtTms`` seconds after it was written — the
fallback the control path relies on when the edge loses its link.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from connectors.modbus_edge.simserver import OnRead, SimServer, _runs

#: on_write(unit, address, words, image) -> exception code or None (the image is live)
OnWrite = Callable[[int, int, list[int], dict[int, int]], int | None]
ILLEGAL_ADDRESS = 0x02


class WritableSimServer(SimServer):
    """``WritableSimServer({unit: image}, on_write=…).start()``; writes update the image."""

    def __init__(self, images: Mapping[int, Mapping[int, int]], *,
                 on_read: OnRead | None = None, on_write: OnWrite | None = None,
                 writable: Mapping[int, Iterable[int]] | None = None,
                 port: int | None = None) -> None:
        super().__init__(images, on_read=on_read, port=port)
        # the caller's dicts themselves: a device model (below) and a test see what was written
        self.images = {u: i if isinstance(i, dict) else dict(i) for u, i in images.items()}
        self.on_write = on_write
        #: unit -> addresses a client may write (None = every defined address)
        self.writable = {u: set(a) for u, a in (writable or {}).items()} if writable else None
        self.writes: list[tuple[int, int, list[int]]] = []

    def _device(self, unit: int, image: dict[int, int]) -> SimDevice:
        async def action(fc: int, start: int, address: int, count: int,
                         registers: list[int], values: Any) -> ExcCodes | None:
            if values is not None and fc in (6, 16):
                words = [int(v) & 0xFFFF for v in (values if isinstance(values, list)
                                                   else [values])]
                allowed = self.writable.get(unit, set()) if self.writable is not None else None
                if allowed is not None and any(a not in allowed
                                               for a in range(address, address + len(words))):
                    return ExcCodes(ILLEGAL_ADDRESS)
                if self.on_write is not None:
                    code = self.on_write(unit, address, words, image)
                    if code:
                        return ExcCodes(code)
                for offset, word in enumerate(words):
                    image[address + offset] = word
                self.writes.append((unit, address, words))
                return None
            self.reads += 1
            if self.on_read is not None:
                code = self.on_read(unit, fc, address, count, image)
                if code:
                    return ExcCodes(code)
            for a in range(address, address + count):
                if a in image:
                    registers[a - start] = image[a] & 0xFFFF
            return None

        blocks = [SimData(address, values=words, datatype=DataType.REGISTERS)
                  for address, words in _runs(image)]
        return SimDevice(id=unit, simdata=blocks, action=action)


# -- a SunSpec inverter (1 + 103 + 123, optionally 124) ------------------------------------------
def _text(s: str, words: int) -> list[int]:
    raw = s.encode().ljust(words * 2, b"\x00")
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, words * 2, 2)]


class SunSpecInverter:
    """A SunSpec three-phase inverter whose output obeys model 123 (and a battery, model 124).

    ``available_w`` is what the sun gives; the reported ``W`` is that, capped by the limit while
    it is enabled. The revert timer is kept in wall time, so a test can watch it expire."""

    BASE = 40000

    def __init__(self, rated_w: float = 10_000.0, available_w: float = 6_000.0, *,
                 storage: bool = False, limit_sf: int = -1, clock: Callable[[], float] =
                 time.monotonic) -> None:
        self.rated_w = rated_w
        self.available_w = available_w
        self.clock = clock
        self.limit_sf = limit_sf
        self._lock = threading.Lock()
        self._revert_at: float | None = None
        self._storage_revert_at: float | None = None
        self.reverts = 0
        image: dict[int, int] = {}
        address = self.BASE
        image[address], image[address + 1] = 0x5375, 0x6E53
        address += 2
        self.common = address
        self._model(image, address, 1, 66)
        for offset, words in ((2, _text("IoE Sim", 16)), (18, _text("Inverter 3P", 16)),
                              (50, _text("SIM-0001", 16)), (66, [1])):
            for i, w in enumerate(words):
                image[address + offset + i] = w
        address += 2 + 66
        self.inverter = address
        self._model(image, address, 103, 50)
        image[address + 15] = 0  # W_SF = 0
        image[address + 38] = 4  # St = MPPT
        address += 2 + 50
        self.controls = address
        self._model(image, address, 123, 24)
        image[address + 4] = 1  # Conn = connected
        image[address + 5] = round(100 / 10 ** limit_sf)  # WMaxLimPct = 100 %
        image[address + 9] = 0  # WMaxLim_Ena = disabled
        image[address + 23] = limit_sf & 0xFFFF  # WMaxLimPct_SF
        address += 2 + 24
        self.storage: int | None = None
        if storage:
            self.storage = address
            self._model(image, address, 124, 24)
            image[address + 2] = 5000  # WChaMax = 5000 W (SF 0)
            image[address + 8] = 500   # ChaState 50.0 % (SF -1)
            image[address + 22] = (-1) & 0xFFFF
            image[address + 25] = 0     # InOutWRte_SF = 0
            image[address + 12] = 100   # OutWRte 100 %
            image[address + 13] = 100   # InWRte 100 %
            address += 2 + 24
        image[address], image[address + 1] = 0xFFFF, 0
        self.image = image

    @staticmethod
    def _model(image: dict[int, int], address: int, model_id: int, length: int) -> None:
        image[address], image[address + 1] = model_id, length
        for a in range(address + 2, address + 2 + length):
            image.setdefault(a, 0)

    # -- addresses a client may write (the RW points of 123 and 124) --------------------------
    def writable_addresses(self) -> set[int]:
        c = self.controls
        found = {c + o for o in (2, 3, 4, 5, 6, 7, 8, 9)}
        if self.storage is not None:
            s = self.storage
            found |= {s + o for o in (2, 3, 4, 5, 6, 7, 12, 13, 14, 15, 16, 17)}
        return found

    # -- behaviour -----------------------------------------------------------------------------
    @property
    def limit_pct(self) -> float | None:
        """The limit in force (None = no limit)."""
        if self.image[self.controls + 9] != 1:
            return None
        return self.image[self.controls + 5] * 10.0 ** self.limit_sf

    def on_write(self, unit: int, address: int, words: list[int], image: dict[int, int]
                 ) -> int | None:
        c = self.controls
        touched = set(range(address, address + len(words)))
        with self._lock:
            if touched & {c + 5, c + 9}:
                rvrt = words[c + 7 - address] if c + 7 in touched else image[c + 7]
                self._revert_at = self.clock() + rvrt if rvrt else None
            if self.storage is not None and touched & {self.storage + 5, self.storage + 12,
                                                       self.storage + 13}:
                s = self.storage
                rvrt = words[s + 15 - address] if s + 15 in touched else image[s + 15]
                self._storage_revert_at = self.clock() + rvrt if rvrt else None
        return None

    def on_read(self, unit: int, fc: int, address: int, count: int, image: dict[int, int]
                ) -> int | None:
        now = self.clock()
        c = self.controls
        with self._lock:
            if self._revert_at is not None and now >= self._revert_at:
                image[c + 9] = 0  # the inverter drops the limit by itself: its safe default
                image[c + 5] = round(100 / 10 ** self.limit_sf)
                self._revert_at = None
                self.reverts += 1
            if (self.storage is not None and self._storage_revert_at is not None
                    and now >= self._storage_revert_at):
                image[self.storage + 5] = 0
                self._storage_revert_at = None
                self.reverts += 1
        limit = self.limit_pct
        power = self.available_w if image[c + 4] == 1 else 0.0
        if limit is not None:
            power = min(power, self.rated_w * limit / 100.0)
        image[self.inverter + 14] = int(round(power)) & 0xFFFF
        image[self.inverter + 38] = 5 if limit is not None and power < self.available_w else 4
        return None

    def server(self, unit: int = 1, port: int | None = None) -> WritableSimServer:
        return WritableSimServer({unit: self.image}, on_read=self.on_read,
                                 on_write=self.on_write,
                                 writable={unit: self.writable_addresses()}, port=port)


# -- a Huawei SUN2000 (the registers of the shipped map plus the writable ones) ------------------
class HuaweiInverter:
    """A SUN2000 answering the shipped map's blocks, with active power derating (40125/40126)
    and the feed-in limit (47415/47416). No revert timer: the real one has none over Modbus."""

    def __init__(self, rated_w: float = 10_000.0, available_w: float = 6_000.0) -> None:
        self.rated_w = rated_w
        self.available_w = available_w
        image: dict[int, int] = {}
        for start, end in ((32064, 32120), (37100, 37125)):
            for a in range(start, end):
                image[a] = 0
        image[32089] = 0x0200  # on grid
        image[32085] = 5000    # 50.00 Hz
        image[32069] = 2300    # 230.0 V
        for a in range(40125, 40128):
            image[a] = 0
        image[40125] = 1000    # 100.0 %: no derating
        image[40126], image[40127] = (int(rated_w) >> 16) & 0xFFFF, int(rated_w) & 0xFFFF
        for a in range(47415, 47419):
            image[a] = 0
        for a in range(47075, 47079):
            image[a] = 0
        self.image = image

    def writable_addresses(self) -> set[int]:
        return {40125, 40126, 40127, 47415, 47416, 47417, 47418, 47075, 47076, 47077, 47078}

    def on_read(self, unit: int, fc: int, address: int, count: int, image: dict[int, int]
                ) -> int | None:
        pct = ((image[40125] ^ 0x8000) - 0x8000) / 10.0
        fixed = (image[40126] << 16) | image[40127]
        power = min(self.available_w, self.rated_w * pct / 100.0, float(fixed))
        raw = int(round(power)) & 0xFFFFFFFF
        image[32080], image[32081] = raw >> 16, raw & 0xFFFF
        image[32089] = 0x0201 if power < self.available_w else 0x0200
        return None

    def server(self, unit: int = 1, port: int | None = None) -> WritableSimServer:
        return WritableSimServer({unit: self.image}, on_read=self.on_read,
                                 writable={unit: self.writable_addresses()}, port=port)
