"""No password, token, NIF or full CUPS in any log line, even at DEBUG and on errors."""

from __future__ import annotations

import argparse
import logging

from conftest import CUPS_A, CUPS_C, MEMBER_NIF, NIF, PASSWORD

from connectors.datadis import command
from connectors.datadis.redact import redact_text


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    command.configure(parser)
    return command.run(parser.parse_args(argv))


def test_secrets_never_reach_the_logs(fake, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)  # it logs query strings at DEBUG
    base = ["--state-dir", str(tmp_path / "state"), "--timeout", "5", "fetch",
            "--base-url", fake.url, "--username", NIF, "--password", PASSWORD, "--print"]
    # a normal month, an expired token, a 502 + 429 (error lines carry the query) and an
    # authorizedNif query
    assert run(base + ["--cups", CUPS_A, "--from", "2025-01", "--to", "2025-01"]) == 0
    fake.expire_tokens()
    fake.script("get-consumption-data-v2", "502")
    assert run(base + ["--cups", CUPS_A, "--from", "2025-02", "--to", "2025-02"]) == 1
    # within the back-off window after that error the fetch is deferred: said, and exit 1
    assert run(base + ["--cups", CUPS_A, "--from", "2025-02", "--to", "2025-02"]) == 1
    assert run(base + ["--cups", CUPS_C, "--authorized-nif", MEMBER_NIF, "--from", "2025-03",
                       "--to", "2025-03"]) == 0
    out = capsys.readouterr()
    tokens = list(fake.state.issued)
    assert len(tokens) >= 2
    lines = [r.getMessage() for r in caplog.records] + caplog.text.splitlines()
    assert any("urllib3" in r.name for r in caplog.records)  # the DEBUG lines were there
    assert any("failed" in line for line in lines)  # and the error lines
    assert any("…[cups]" in line for line in lines)  # CUPS were logged, masked
    assert any("[nif]" in line or "[secret]" in line for line in lines)
    forbidden = [PASSWORD, NIF, MEMBER_NIF, CUPS_A, CUPS_C, *tokens]
    leaks = [(secret, line) for line in lines for secret in forbidden if secret in line]
    assert leaks == []
    # password and tokens appear nowhere at all, not even in the printed data
    for secret in [PASSWORD, *tokens]:
        assert secret not in out.out and secret not in out.err


def test_redact_text_patterns():
    text = (f"login {NIF} pw=x password={PASSWORD} Bearer abc.def cups={CUPS_A}0F "
            f"nie X1234567L cif B12345678 jwt eyJhbGciOi.eyJzdWIi.c2ln")
    clean = redact_text(text)
    for secret in [NIF, PASSWORD, CUPS_A, "X1234567L", "B12345678", "eyJhbGciOi", "abc.def"]:
        assert secret not in clean
    assert "ES0021…[cups]" in clean
