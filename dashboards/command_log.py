"""The command log of the control centre: who asked what of which device, why, what was
written, what the device read back, and how it ended.

The rows come from :class:`control.store.CommandLog` (the one reader of the ``commands`` and
``command_results`` tables of migration 0004); this module only turns its rows into typed
entries for the web (JSON text decoded, times as epoch ms) and names the one state the UI
shows. Read-only: the control centre shows commands, it does not send them from here.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from control.store import CommandLog
from ioe.settings import Settings

MAX_LIMIT = 200
DEFAULT_LIMIT = 50

#: the state shown for a command, from (issuer status, executor result). A result, when there
#: is one, is how the command ended; without one a sent command is pending until its deadline,
#: then it has had no answer (the executor reports ``expired`` when it sees it late).
_RESULT_STATES = {"acknowledged": "acknowledged", "failed": "failed", "expired": "expired"}
_ISSUER_STATES = {"refused": "refused", "dry_run": "dry_run"}


@dataclass(frozen=True)
class CommandEntry:
    command_id: str
    device_id: str
    key: str
    value: Any
    requested_by: str
    reason: str
    rule_id: str
    dry_run: bool
    issued: str  # sent | refused | dry_run (the issuer's word)
    refusal: str
    issued_at_ms: int
    deadline_ms: int | None
    result: str | None  # acknowledged | failed | expired, None without a report
    readback: Any
    detail: str
    executor: str
    executed_at_ms: int | None
    written: list[Any]
    state: str  # what the UI shows: the result, refused, dry_run, pending or no_result
    #: the device drops the value by itself this long after it was written (None: never)
    revert_s: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def state_of(issued: str, result: str | None, deadline_ms: int | None, now_ms: int) -> str:
    if result in _RESULT_STATES:
        return _RESULT_STATES[result]
    if issued in _ISSUER_STATES:
        return _ISSUER_STATES[issued]
    return "pending" if deadline_ms is None or now_ms <= deadline_ms else "no_result"


def _json(text: Any) -> Any:
    """JSON text of the log (value, readback, written) back as a value; '' = nothing."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _ms(value: Any) -> int | None:
    """A ``DateTime`` of the log as epoch ms; the columns are UTC (migration 0004)."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return int(aware.timestamp() * 1000)
    if isinstance(value, int | float) and value > 0:
        return int(value) * 1000
    return None


def entry(row: dict[str, Any], now_ms: int) -> CommandEntry:
    """One row of :meth:`control.store.CommandLog.recent` as a typed entry."""
    result = row.get("result") or None
    deadline = _ms(row.get("deadline"))
    written = _json(row.get("written"))
    executed = int(row.get("executed_at_ms") or 0)
    return CommandEntry(
        command_id=str(row["command_id"]), device_id=str(row["device_id"]),
        key=str(row["key"]), value=_json(row.get("value")),
        requested_by=str(row.get("requested_by") or ""), reason=str(row.get("reason") or ""),
        rule_id=str(row.get("rule_id") or ""), dry_run=bool(row.get("dry_run")),
        issued=str(row.get("status") or ""), refusal=str(row.get("refusal") or ""),
        issued_at_ms=int(row["issued_at_ms"]), deadline_ms=deadline, result=result,
        readback=_json(row.get("readback")) if result else None,
        detail=str(row.get("detail") or ""), executor=str(row.get("executor") or ""),
        executed_at_ms=executed or None, written=written if isinstance(written, list) else [],
        state=state_of(str(row.get("status") or ""), result, deadline, now_ms),
        revert_s=int(row["revert_s"]) if row.get("revert_s") is not None else None)


def recent(settings: Settings, community_id: str, limit: int = DEFAULT_LIMIT,
           now_ms: int | None = None) -> list[CommandEntry]:
    """The community's last commands, newest first (blocking: run it in the thread pool)."""
    log = CommandLog(settings)
    try:
        rows = log.recent(community_id=community_id, limit=max(1, min(limit, MAX_LIMIT)))
    finally:
        log.close()
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    return [entry(r, now) for r in rows]
