"""``ioe.logsafe``: one record is one line, and credentials never reach the log (pure tests;
the real ``ioe web`` process is checked in tests/dashboards/test_dash_security.py)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from ioe import logsafe


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("test.logsafe")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logsafe.install(logger)
    yield logger, out
    logger.handlers = []


def test_line_breaks_and_controls_in_arguments_are_escaped(captured) -> None:  # noqa: ANN001
    logger, out = captured
    logger.warning("refused channel %s from %s (%d)", "a\nINFO auth: admin logged in\r",
                   "topic/\x1b[2J\u2028x\x85", 7)
    text = out.getvalue()
    assert text.count("\n") == 1  # the handler's own terminator only
    assert text == ("WARNING test.logsafe: refused channel a\\nINFO auth: admin logged in\\r "
                    "from topic/\\x1b[2J\\u2028x\\x85 (7)\n")


def test_exceptions_and_mapping_arguments_are_escaped(captured) -> None:  # noqa: ANN001
    logger, out = captured
    logger.error("bad payload: %s", ValueError("line one\nline two"))
    logger.info("%(topic)s", {"topic": "shellies/x\n"})
    assert out.getvalue().splitlines() == ["ERROR test.logsafe: bad payload: line one\\nline two",
                                           "INFO test.logsafe: shellies/x\\n"]


@pytest.mark.parametrize(("text", "expected"), [
    ("GET /ws?token=abc.def&x=1", "GET /ws?token=[REDACTED]&x=1"),
    ("/api/me?a=1&access_token=s3cr3t", "/api/me?a=1&access_token=[REDACTED]"),
    ("login password=hunter2 ok", "login password=[REDACTED] ok"),
    ("PASSWORD=x;y", "PASSWORD=[REDACTED];y"),
    ('{"op": "auth", "token": "eyJ.abc"}', '{"op": "auth", "token": "[REDACTED]"}'),
    ("Authorization: Bearer eyJ.abc.def", "Authorization: Bearer [REDACTED]"),
    ("authorization=Basic dXNlcjpwdw==", "authorization=Basic [REDACTED]"),
    ("/ws?tok%65n=abc&x=1", "/ws?tok%65n=[REDACTED]&x=1"),  # the server decodes the key
    ("/ws?token%3Dabc", "/ws?token%3D[REDACTED]"),
    ("cfg x.password=s3 y", "cfg x.password=[REDACTED] y"),
    ("tokens issued: 3", "tokens issued: 3"),  # not a credential
    ("mytoken_count=3 retoken=4", "mytoken_count=3 retoken=4"),
    ("token_id=4f2a", "token_id=4f2a"),
])
def test_credentials_are_redacted(text: str, expected: str) -> None:
    assert logsafe.clean(text) == expected


def test_access_log_arguments_stay_a_tuple(captured) -> None:  # noqa: ANN001
    """uvicorn's access formatter unpacks the arguments: they stay five, redacted."""
    logger, out = captured
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/health?token=abc", "1.1", 200), None)
    logsafe.SafeLogFilter().filter(record)
    assert record.args == ("127.0.0.1:5", "GET", "/health?token=[REDACTED]", "1.1", 200)
    logger.handle(record)
    assert out.getvalue() == 'INFO test.logsafe: 127.0.0.1:5 - "GET /health?token=[REDACTED] ' \
                             'HTTP/1.1" 200\n'


def test_install_is_idempotent_and_uvicorn_config_carries_the_filter() -> None:
    logger = logging.getLogger("test.logsafe.install")
    logger.handlers = [logging.StreamHandler(io.StringIO())]
    first = logsafe.install(logger)
    assert logsafe.install(logger) is first
    assert logger.handlers[0].filters == [first]
    config = logsafe.uvicorn_log_config("info")
    assert config["filters"]["ioe_safe"]["()"] == "ioe.logsafe.SafeLogFilter"
    assert all("ioe_safe" in h["filters"] for h in config["handlers"].values())
    logger.handlers = []


def test_records_stay_safe_when_a_framework_replaces_the_handlers() -> None:
    """Faust's worker runs dictConfig with its own root handler after ``ioe.cli.main``: the
    record factory installed with the root filter still cleans what it writes."""
    logsafe.install()  # what ioe.cli.main does (idempotent)
    out = io.StringIO()
    logger = logging.getLogger("test.logsafe.replaced")
    logger.handlers = [logging.StreamHandler(out)]  # a handler without the filter
    logger.propagate = False
    logger.warning("topic %s", "a\nb?token=xyz")
    assert out.getvalue() == "topic a\\nb?token=[REDACTED]\n"
    logger.handlers = []
