"""Dead letters: what could not be used, kept with the reason instead of being dropped.

A dead letter carries the raw payload (base64 when it is not UTF-8) so an operator can fix the
decoder or the registry and replay it. ``reason`` is a short machine-readable word
(``unknown_device``, ``decode_error``, ``invalid_reading``, ``modbus_error``, ``datadis_error``…)
used as the label of the dead-letter counters; ``detail`` is the human explanation.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson


def dead_letter(
    *,
    source: str,
    reason: str,
    detail: str,
    payload: bytes | str | None,
    origin: str | None = None,
    decoder: str | None = None,
    received_at_ms: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the dead-letter record (a dict ready for :func:`encode_dead_letter`)."""
    record: dict[str, Any] = {
        "v": 1,
        "source": source,
        "reason": reason,
        "detail": detail,
        "origin": origin,
        "decoder": decoder,
        "received_at_ms": received_at_ms if received_at_ms is not None else int(time.time() * 1000),
    }
    if isinstance(payload, bytes):
        try:
            record["payload"] = payload.decode("utf-8")
        except UnicodeDecodeError:
            record["payload_b64"] = base64.b64encode(payload).decode("ascii")
    else:
        record["payload"] = payload
    if extra:
        record.update(extra)
    return record


def encode_dead_letter(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)
