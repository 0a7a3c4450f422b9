"""Redaction of personal data and secrets in every log line of the connector.

Datadis queries carry a NIF (the login user and ``authorizedNif``), CUPS (identify a home),
a JWT and a password. Log lines end up in journald, CI output and bug reports, so a
:class:`logging.Filter` rewrites every record *before* any handler formats it: patterns catch
what looks like a CUPS, NIF/NIE/CIF or JWT, and literal secrets (the password, the current
token) registered at runtime are replaced wherever they appear, including in exception text.

Attach it with :func:`install`: a filter on a logger only sees records logged *through that
logger* (not its children), so it is attached to each connector logger, to urllib3 (its
DEBUG lines contain the query string with the CUPS) and to the root handlers.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback

#: CUPS: ES + 4-digit distributor + 12 digits + 2 check letters + optional 2-char suffix.
_CUPS = re.compile(r"\bES(\d{4})\d{12}[A-Z]{2}(?:[0-9][A-Z])?\b", re.IGNORECASE)
#: DNI (8 digits + letter), NIE (X/Y/Z + 7 digits + letter), CIF (letter + 7 digits + check).
_NIF = re.compile(r"\b(?:\d{8}[A-Z]|[XYZ]\d{7}[A-Z]|[ABCDEFGHJNPQRSUVW]\d{7}[0-9A-J])\b",
                  re.IGNORECASE)
#: JWTs: three base64url segments, the first one a JSON header (``eyJ``).
_JWT = re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]*")
_BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)
_PASSWORD_FIELD = re.compile(r"(password=)[^&\s]+", re.IGNORECASE)


def _cups_mask(match: re.Match[str]) -> str:
    # keep the distributor prefix: it helps an operator without identifying the home
    return f"ES{match.group(1)}…[cups]"


def redact_text(text: str, secrets: frozenset[str] = frozenset()) -> str:
    """Mask secrets and personal identifiers in ``text`` (pure, for tests and messages)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "[secret]")
    text = _JWT.sub("[token]", text)
    text = _BEARER.sub(r"\1[token]", text)
    text = _PASSWORD_FIELD.sub(r"\1[secret]", text)
    text = _CUPS.sub(_cups_mask, text)
    return _NIF.sub("[nif]", text)


class RedactingFilter(logging.Filter):
    """Renders the record's message, redacts it and freezes it (``args`` cleared)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()

    def add_secret(self, value: str | None) -> None:
        if value and len(value) >= 3:
            with self._lock:
                self._secrets = self._secrets | {value}

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_ioe_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        if record.exc_info:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            record.exc_info = None
            record.exc_text = None
        if record.stack_info:
            message += "\n" + record.stack_info
            record.stack_info = None
        record.msg = redact_text(message, self._secrets)
        record.args = None
        record._ioe_redacted = True  # type: ignore[attr-defined]
        return True


#: One filter per process: secrets registered by any client are masked in every line.
REDACTOR = RedactingFilter()

#: Third-party loggers that can print query strings or headers.
_THIRD_PARTY = ("urllib3.connectionpool", "urllib3", "requests")


def get_logger(name: str) -> logging.Logger:
    """A connector logger with the redacting filter attached."""
    logger = logging.getLogger(name)
    if REDACTOR not in logger.filters:
        logger.addFilter(REDACTOR)
    return logger


def install(*, root_handlers: bool = True) -> RedactingFilter:
    """Attach the filter to third-party loggers and (optionally) to the root handlers."""
    for name in _THIRD_PARTY:
        get_logger(name)
    if root_handlers:
        for handler in logging.getLogger().handlers:
            if REDACTOR not in handler.filters:
                handler.addFilter(REDACTOR)
    return REDACTOR
