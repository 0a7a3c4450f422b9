"""Inverter fault states, as the device itself reports them in the reading's ``status``.

The meaning of a status code depends on the device family, so codes are data
(``status_codes.yaml``: SunSpec "St", Huawei SUN2000 register 32089, textual states), not code.
Unknown codes are not judged: guessing would raise alarms on firmware we have never seen.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from ioe.reading import Reading
from streams.anomalies.config import InverterStatusConfig
from streams.anomalies.lifecycle import CLEAR, Condition

KIND = "inverter_fault"
CODES_FILE = Path(__file__).with_name("status_codes.yaml")


@lru_cache(maxsize=4)
def load_codes(path: str = str(CODES_FILE)) -> dict[str, dict[Any, tuple[str, str]]]:
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return {source: {(code if isinstance(code, int) else str(code).lower()): (cat, label)
                     for code, (cat, label) in table.items()}
            for source, table in raw.items()}


def _code(status: str) -> int | str:
    text = status.strip().lower()
    try:
        return int(text, 0)
    except ValueError:
        return text


def classify(source: str, status: str) -> tuple[str, str] | None:
    """(category, label) of a status for a source, or None when the code is unknown."""
    codes = load_codes()
    code = _code(status)
    family = "sunspec" if source.startswith("sunspec") else source
    table = codes.get(family)
    if table is not None and code in table:
        return table[code]
    return codes["text"].get(code) if isinstance(code, str) else None


def check(cfg: InverterStatusConfig, reading: Reading,
          elevation_deg: float | None) -> Condition | None:
    if reading.status is None:
        return None
    found = classify(reading.source, reading.status)
    if found is None:
        return None
    category, label = found
    if category == "off" and (elevation_deg is None or elevation_deg < cfg.off_min_elevation_deg):
        return CLEAR  # an inverter "off" at night is asleep, not broken
    severity = cfg.severity_by_category.get(category)
    if severity is None:
        return CLEAR
    return Condition(True, severity, {"status": reading.status, "category": category,
                                      "label": label, "source": reading.source})
