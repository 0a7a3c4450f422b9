"""Counter state that survives restarts: one JSON file under the state directory.

Real meters never forget their cumulative counters; neither does the simulator. The file holds,
per device, the counters and the simulated instant they belong to. It is written atomically
(temporary file + rename) periodically and on a clean stop, so a crash loses at most a few
seconds of counting, never makes a counter go backwards.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = "simulator-state.json"
FORMAT = 1


def state_path(state_dir: Path) -> Path:
    return Path(state_dir) / STATE_FILE


def load_state(state_dir: Path) -> dict[str, dict[str, Any]]:
    """Per-device state saved by a previous run ({} when there is none or it is unreadable)."""
    path = state_path(state_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}
    devices = data.get("devices", {})
    return devices if isinstance(devices, dict) else {}


def save_state(state_dir: Path, devices: dict[str, dict[str, Any]]) -> Path:
    path = state_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, "devices": devices}, indent=1, sort_keys=True),
                   encoding="utf-8")
    os.replace(tmp, path)
    return path
