"""A real pymodbus TCP server holding register images, run in a background thread.

Used by the tests, the benchmark and demos: the agent talks to it over a real socket exactly as
to an inverter. Registers not in the image are undefined (exception 0x02 like a real device);
``on_read`` hooks let a test change values or answer with an exception per request.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

#: on_read(unit, fc, address, count, image) -> exception code or None; ``image`` is the live
#: {address: word} dict of the unit (changes show in this and later answers)
OnRead = Callable[[int, int, int, int, dict[int, int]], int | None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _runs(image: Mapping[int, int]) -> list[tuple[int, list[int]]]:
    """Contiguous runs of defined addresses: each becomes one SimData block."""
    runs: list[tuple[int, list[int]]] = []
    for address in sorted(image):
        if runs and runs[-1][0] + len(runs[-1][1]) == address:
            runs[-1][1].append(image[address] & 0xFFFF)
        else:
            runs.append((address, [image[address] & 0xFFFF]))
    return runs


class SimServer:
    """``SimServer({unit: {address: word}}).start()``; ``.port``; ``.stop()``."""

    def __init__(self, images: Mapping[int, Mapping[int, int]], *,
                 on_read: OnRead | None = None, port: int | None = None,
                 framer: str = "socket") -> None:
        #: "socket" = Modbus TCP; "rtu" = RTU frames over TCP (a serial line behind a
        #: transparent gateway; clients reach it with the serial URL socket://host:port)
        self.framer = FramerType(framer)
        self.images: dict[int, dict[int, int]] = {u: dict(i) for u, i in images.items()}
        self.on_read = on_read
        self.port = port or free_port()
        self.reads = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusTcpServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _device(self, unit: int, image: dict[int, int]) -> SimDevice:
        async def action(fc: int, start: int, address: int, count: int,
                         registers: list[int], values: Any) -> ExcCodes | None:
            self.reads += 1
            if self.on_read is not None:
                code = self.on_read(unit, fc, address, count, image)
                if code:
                    return ExcCodes(code)
            for a in range(address, address + count):  # image -> server memory
                if a in image:
                    registers[a - start] = image[a] & 0xFFFF
            return None

        blocks = [SimData(address, values=words, datatype=DataType.REGISTERS)
                  for address, words in _runs(image)]
        return SimDevice(id=unit, simdata=blocks, action=action)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        async def main() -> None:
            devices = [self._device(u, img) for u, img in self.images.items()]
            self._server = ModbusTcpServer(devices, address=("127.0.0.1", self.port),
                                           framer=self.framer)
            await self._server.serve_forever(background=True)
            self._ready.set()
            await self._server.serving

        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    def start(self) -> SimServer:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"modbus-sim-{self.port}")
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"simulated Modbus server failed: {self._error}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None and self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop)
            try:
                fut.result(5)
            except Exception:  # noqa: BLE001 - already stopping
                pass
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
