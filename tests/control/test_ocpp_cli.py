"""``ioe control ocpp`` as a process: a simulated wallbox connects to it, ``ioe control send``
sets its current through ``ioe.commands.<community>`` and prints the acknowledged result; the log names
who asked and never the driver's id tag."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import orjson
import pytest
from chargers import SimulatedCharger
from control_helpers import write_registry
from ocpp.v16 import call
from test_control_loop import start, stop

from control.ocpp.limits import iso
from ioe.settings import ROOT

pytestmark = pytest.mark.stack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_control_ocpp_process_takes_a_send(kafka_settings, tmp_path, unique_id):
    registry = write_registry(tmp_path / "registry.yaml")
    port = free_port()
    central = start(kafka_settings, ["control", "ocpp", "--host", "127.0.0.1", "--port",
                                     str(port), "--registry", str(registry),
                                     "--no-follow-registry", "--group-id", f"ocpp-{unique_id}"],
                    tmp_path / "ocpp.log")
    sim = SimulatedCharger("CP-1")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert sim.connect(f"ws://127.0.0.1:{port}/ocpp") == "Accepted"
                break
            except OSError:
                assert central.poll() is None, (tmp_path / "ocpp.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "central system never listened"
                time.sleep(0.3)
        sim.send(call.StartTransaction(connector_id=1, id_tag="RFID-0xC0FFEE", meter_start=500,
                                       timestamp=iso(int(time.time() * 1000))))
        time.sleep(3)  # the executor joins its group of ioe.commands
        env = {**os.environ, "IOE_KAFKA": kafka_settings.kafka_bootstrap,
               "IOE_TOPIC_PREFIX": kafka_settings.topic_prefix}
        sent = subprocess.run(
            [sys.executable, "-m", "ioe.cli", "control", "send", "--device", "ev-1", "--set",
             "ev_current_a=7", "--as", "operator:ana", "--reason", "evening peak",
             "--registry", str(registry), "--no-store", "--ttl-s", "15"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
        assert sent.returncode == 0, sent.stderr + (tmp_path / "ocpp.log").read_text()[-3000:]
        result = orjson.loads(sent.stdout.splitlines()[-1])
        assert (result["status"], result["readback"], result["executor"]) == (
            "acknowledged", 7.0, "ocpp-central")
        assert sim.set_profiles()[-1]["charging_schedule"]["charging_schedule_period"][0][
            "limit"] == 7
        refused = subprocess.run(
            [sys.executable, "-m", "ioe.cli", "control", "send", "--device", "ev-1", "--set",
             "ev_current_a=17", "--registry", str(registry), "--no-store"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
        assert refused.returncode == 2 and "outside [0, 16]" in refused.stderr
    finally:
        sim.close()
        stop(central)
    log = (tmp_path / "ocpp.log").read_text()
    assert "operator:ana asks CP-1 ev_current_a=7.0 (evening peak)" in log, log[-3000:]
    assert "RFID-0xC0FFEE" not in log
