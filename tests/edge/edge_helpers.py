"""What the secure-edge tests share: a one-meter registry, free ports, waiting, and the
Modbus edge agent started from its bundle in its own process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ioe.settings import ROOT

REGISTRY_YAML = """
communities:
  - id: ce-test
    name: Test community
    timezone: Europe/Madrid
    location: {latitude: 39.48, longitude: -0.36}
    members:
      - {id: m01, cups: ES0021380404050463BV, contracted_power_kw: 3.45}
    plants:
      - {id: plant-1, peak_power_kw: 30}
    devices:
      - {id: 'meter-1', role: generation, plant: plant-1}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_agent(bundle_dir: Path, log: Path, level: str = "INFO") -> subprocess.Popen[bytes]:
    """``ioe modbus-edge --bundle DIR``, its output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ioe.cli", "--log-level", level, "modbus-edge",
             "--bundle", str(bundle_dir)],
            stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT), start_new_session=True)


def stop_agent(agent: subprocess.Popen[bytes]) -> None:
    """SIGTERM to its process group (the agent may have re-executed itself), then SIGKILL."""
    if agent.poll() is None:
        os.killpg(agent.pid, signal.SIGTERM)
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait(10)
