"""Counters survive restarts, and ``ioe simulate`` stops cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from devtools.simulator.engine import SimConfig, Simulator
from devtools.simulator.state import load_state
from ioe.settings import ROOT

from .conftest import Recorder, SimCommunity, free_port

START_MS = int(datetime(2026, 2, 3, 19, 0, tzinfo=ZoneInfo("Europe/Madrid")).timestamp() * 1000)


def test_counters_continue_after_a_restart(community: SimCommunity, recorder: Recorder,
                                           tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    config = SimConfig(registry_path=community.path, seed=4, speed=600.0, start_ms=START_MS,
                       duration_s=1.5, state_dir=state_dir, min_interval_s=0.2)
    first = Simulator(config)
    asyncio.run(first.run())
    saved = load_state(state_dir)
    gen1_id, hw_id = f"{community.gen1}:0", "inv-hw"
    assert saved[gen1_id]["energy_wh"] > 0 and saved[hw_id]["energy_wh"] > 0
    published = [float(p) for p in recorder.of(f"shellies/{community.gen1}/emeter/0/total")]
    assert published[-1] <= saved[gen1_id]["energy_wh"] + 0.1

    # a second run, later in (simulated) time, starts from the saved counters
    second = Simulator(SimConfig(**{**vars(config), "start_ms": START_MS + 86_400_000}))
    meter = next(m for m in second.meters if m.device_id == gen1_id)
    assert meter.energy_wh == saved[gen1_id]["energy_wh"]
    inverter = next(i for i in second.inverters if i.device_id == hw_id)
    assert inverter.energy_wh == saved[hw_id]["energy_wh"]
    count_before = len(published)
    asyncio.run(second.run())
    time.sleep(0.3)
    later = [float(p) for p in recorder.of(f"shellies/{community.gen1}/emeter/0/total")]
    resumed = later[count_before:]
    assert resumed and resumed[0] >= saved[gen1_id]["energy_wh"] - 0.05  # 0.1 Wh resolution
    # continuing, not restarting from another random meter reading
    assert resumed[0] - saved[gen1_id]["energy_wh"] < 50
    assert load_state(state_dir)[gen1_id]["energy_wh"] >= resumed[-1] - 0.05


def test_ctrl_c_stops_the_command_cleanly_and_saves(community: SimCommunity, recorder: Recorder,
                                                    tmp_path: Path) -> None:
    state_dir = tmp_path / "cli-state"
    base = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "ioe.cli", "simulate", "--registry", str(community.path),
           "--speed", "300", "--start", "2026-07-01T10:00", "--min-interval", "0.2",
           "--modbus-base-port", str(base), "--state-dir", str(state_dir),
           "--fault", f"frozen:{community.tasmota}@5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not recorder.of(f"emon/{community.emon}/E1"):
            time.sleep(0.2)
        assert recorder.of(f"emon/{community.emon}/E1"), "the simulator never published"
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.decode()
    assert proc.returncode == 0, text
    assert f"127.0.0.1:{base}" in text and f"127.0.0.1:{base + 1}" in text
    assert "counters saved" in text
    state = json.loads((state_dir / "simulator-state.json").read_text())["devices"]
    last_e1 = float(recorder.of(f"emon/{community.emon}/E1")[-1])
    assert abs(state[f"{community.emon}:1"]["energy_wh"] - last_e1) < 100
    # the simulated clock started at the requested local time
    first = json.loads(recorder.of(f"tele/{community.tasmota}/SENSOR")[0])
    assert first["Time"].startswith("2026-07-01T10:0")


def test_bad_arguments_exit_2(community: SimCommunity, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for extra in (["--fault", "melt:inv-hw"], ["--fault", "offline:ghost"], ["--speed", "0"],
                  ["--start", "yesterday"]):
        out = subprocess.run([sys.executable, "-m", "ioe.cli", "simulate", "--registry",
                              str(community.path), "--state-dir", str(tmp_path), *extra],
                             capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 2, (extra, out.stdout, out.stderr)
        assert "ioe simulate:" in out.stderr
