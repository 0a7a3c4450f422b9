"""`ioe stack down --only <server>` stops that server and leaves the others running.

A private Mosquitto on a free port with a private state folder (``IOE_LOCAL_DIR``): the
command only ever acts on the pid files of that folder, so the shared stack of the other tests
is never touched.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys

import pytest

from devtools import stack
from ioe.settings import ROOT, get_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private(tmp_path):
    settings = dataclasses.replace(get_settings(), mqtt_port=free_port(), local_dir=tmp_path)
    yield settings
    stack.down(settings, out=lambda _line: None)  # whatever the test left running


def ioe_stack(private, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IOE_LOCAL_DIR": str(private.local_dir),
           "IOE_MQTT_PORT": str(private.mqtt_port)}
    return subprocess.run([sys.executable, "-m", "ioe.cli", "stack", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_down_only_kafka_leaves_mosquitto_running(private):
    stack.up(private, only=["mosquitto"], out=lambda _line: None)
    assert stack.mosquitto_healthy(private)
    done = ioe_stack(private, "down", "--only", "kafka")
    assert done.returncode == 0, done.stderr
    assert "mosquitto" not in done.stdout  # not even looked at
    assert stack.mosquitto_healthy(private), "--only kafka stopped mosquitto"
    done = ioe_stack(private, "down", "--only", "mosquitto")
    assert done.returncode == 0, done.stderr
    assert any(line.startswith("mosquitto") and "stopped" in line
               for line in done.stdout.splitlines())
    assert not stack.port_open(private.mqtt_host, private.mqtt_port)
