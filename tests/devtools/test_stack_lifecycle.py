"""`ioe stack up` reuses what runs, `ioe stack down` stops only what it started.

Uses a private Mosquitto on a free port and a private state folder, so the shared stack of the
other tests is never touched.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess

import pytest

from devtools import stack
from ioe.settings import get_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private(tmp_path):
    return dataclasses.replace(get_settings(), mqtt_port=free_port(), local_dir=tmp_path)


def test_up_is_idempotent_and_down_stops_what_it_started(private):
    lines: list[str] = []
    stack.up(private, only=["mosquitto"], out=lines.append)
    assert "started" in lines[-1]
    assert stack.mosquitto_healthy(private)
    stack.up(private, only=["mosquitto"], out=lines.append)
    assert "already running" in lines[-1]
    stack.down(private, out=lines.append)
    assert not stack.port_open(private.mqtt_host, private.mqtt_port)
    assert any(line.startswith("mosquitto") and "stopped" in line for line in lines)


def test_down_leaves_servers_it_did_not_start(private, tmp_path):
    conf = tmp_path / "external.conf"
    conf.write_text(f"listener {private.mqtt_port} 127.0.0.1\nallow_anonymous true\nuser root\n")
    external = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if stack.mosquitto_healthy(private):
                break
            import time

            time.sleep(0.1)
        lines: list[str] = []
        stack.up(private, only=["mosquitto"], out=lines.append)
        assert "already running" in lines[-1]
        stack.down(private, out=lines.append)
        assert any("left alone" in line for line in lines)
        assert stack.mosquitto_healthy(private)
        assert external.poll() is None
    finally:
        external.terminate()
        external.wait(10)


def test_missing_packages_are_named_when_not_root(monkeypatch):
    monkeypatch.setitem(stack.SYSTEM_PACKAGES, "imaginary", ("imaginary-server", "no-such-bin"))
    with pytest.raises(stack.StackError, match="apt-get install -y .*imaginary-server"):
        stack.ensure_system_packages(["imaginary"], as_root=False)
