"""Log lines that a client cannot forge and that carry no credentials — one filter for every
process.

Why: log lines carry client-supplied strings (a websocket channel name, an MQTT topic, a device
id, a URL). A newline in one of them writes a second, forged line into the log ("…\\n2026-…
INFO auth: operator logged in"), and a URL with ``?token=…`` puts a credential into the access
log. :class:`SafeLogFilter`, installed on every handler, rewrites each record before it is
formatted:

- control characters (``\\r``, ``\\n``, tabs, ESC, NEL, the Unicode line separators…) in the
  message and in its string arguments become visible escapes (``\\n``, ``\\x1b``, ``\\u2028``),
  so one record is always one line;
- credential values are replaced by ``[REDACTED]``: ``token=``/``access_token=``/``password=``
  (and ``secret=``, ``api_key=``) in query strings and text, the same keys in JSON
  (``"token": "…"``), and ``Authorization`` header values.

Arguments are rewritten one by one and the record keeps its ``args`` tuple, because some
formatters read the arguments themselves (uvicorn's access formatter unpacks
``(client, method, path, version, status)``). Tracebacks (``exc_info``) are left as they are:
their line breaks are the formatter's, not a client's.

``ioe.cli.main`` calls :func:`install` after setting up logging (root handlers, and a record
factory for handlers that frameworks install later); ``ioe web`` gives uvicorn's handlers the
same filter through :func:`uvicorn_log_config`.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

REDACTED = "[REDACTED]"

#: every C0 control, DEL, the C1 controls (NEL among them) and the Unicode line/paragraph
#: separators: each would end or garble a line in some log viewer
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

_KEYS = r"(?:access_token|token|password|passwd|secret|api_key|apikey)"
#: key=value in query strings and free text (the value ends at &, space, quote, ; or ,); the
#: key may be percent-encoded (``tok%65n=`` is ``token=`` to the server that decodes it)
_QUERY = re.compile(r"([\w%.\-]+)((?:=|%3[dD])[^&\s\"';,]+)")
_SECRET_KEY = re.compile(rf"(?i)(?:.*[^a-z0-9_])?{_KEYS}")
#: "key": "value" in JSON text
_JSON = re.compile(rf"(?i)(\"{_KEYS}\"\s*:\s*\")(?:[^\"\\]|\\.)*\"")
#: Authorization: <scheme> <credentials> (headers, reprs of header lists)
_AUTH = re.compile(r"(?i)(\bauthorization\b[\"']?\s*[:=,]\s*[\"']?(?:(?:bearer|basic|token)\s+)?)"
                   r"[^\s\"',;]+")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group(0)
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _redact_pair(match: re.Match[str]) -> str:
    key, rest = match.group(1), match.group(2)
    if not _SECRET_KEY.fullmatch(unquote(key)):
        return match.group(0)
    separator = "=" if rest.startswith("=") else rest[:3]
    return f"{key}{separator}{REDACTED}"


def redact(text: str) -> str:
    """``text`` with credential values replaced by ``[REDACTED]``."""
    text = _QUERY.sub(_redact_pair, text)
    text = _JSON.sub(lambda m: m.group(1) + REDACTED + '"', text)
    return _AUTH.sub(lambda m: m.group(1) + REDACTED, text)


def clean(text: str) -> str:
    """``text`` as one safe log line: credentials redacted, control characters escaped."""
    return _CONTROL.sub(_escape_char, redact(text))


def _clean_arg(value: Any) -> Any:
    """A log argument made safe; numbers stay numbers (``%d`` must keep working)."""
    if isinstance(value, str):
        return clean(value)
    if value is None or isinstance(value, bool | int | float | bytes):
        return value  # bytes are formatted as their repr: already escaped
    text = str(value)  # exceptions, paths, objects: their text is what the line will show
    safe = clean(text)
    return value if safe == text else safe


class SafeLogFilter(logging.Filter):
    """Escapes control characters and redacts credentials in every record (see module doc)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = clean(record.msg)
        elif record.msg is not None and not record.args:
            record.msg = clean(str(record.msg))
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_clean_arg(a) for a in args)
        elif isinstance(args, Mapping):
            record.args = {k: _clean_arg(v) for k, v in args.items()}
        return True


_factory_installed = False


def _install_record_factory(safe: SafeLogFilter) -> None:
    """Make every new record safe when it is created, whatever handlers exist later.

    Frameworks replace the root handlers after ``main()`` set them up (Faust's worker runs
    ``dictConfig`` with its own handler), which would drop a handler filter; a record factory
    survives that. Cleaning twice changes nothing (escapes and ``[REDACTED]`` are stable)."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        safe.filter(record)
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


def install(logger: logging.Logger | None = None) -> SafeLogFilter:
    """Put one :class:`SafeLogFilter` on every handler of ``logger`` (default: the root, and
    then on every record created in the process, see :func:`_install_record_factory`).

    A filter on a *handler* sees the records of every logger that reaches it; a filter on a
    logger would miss the records propagated from its children."""
    target = logger or logging.getLogger()
    existing = next((f for h in target.handlers for f in h.filters
                     if isinstance(f, SafeLogFilter)), None)
    safe = existing or SafeLogFilter()
    for handler in target.handlers:
        if not any(isinstance(f, SafeLogFilter) for f in handler.filters):
            handler.addFilter(safe)
    if logger is None:
        _install_record_factory(safe)
    return safe


def uvicorn_log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's own logging config with :class:`SafeLogFilter` on its handlers (the access
    log writes the request line, query string included)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["ioe_safe"] = {"()": f"{__name__}.SafeLogFilter"}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("ioe_safe")
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        if name in config.get("loggers", {}):
            config["loggers"][name]["level"] = level.upper()
    return config
