"""Misbehaving TCP peers (real sockets): one that never answers, one that hangs up mid-answer."""

from __future__ import annotations

import socket
import threading

from connectors.modbus_edge.simserver import free_port


class FaultyPeer:
    """``mode='silent'``: accepts and reads, never answers. ``mode='drop'``: answers the first
    bytes of a Modbus TCP reply, then closes the connection (dropped mid-read)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.port = free_port()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self._conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        while not self._stop.is_set():
            try:
                request = conn.recv(260)
            except TimeoutError:
                continue
            except OSError:
                return
            if not request:
                return
            if self.mode == "drop":
                # MBAP header promising 13 bytes, then 3 of them, then hang up
                conn.sendall(request[:2] + b"\x00\x00\x00\x0d" + request[6:7] + b"\x03\x0a\x00")
                conn.close()
                return

    def stop(self) -> None:
        self._stop.set()
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass
        self._sock.close()
        self._thread.join(2)
