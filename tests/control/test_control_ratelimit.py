"""The per-device rate limit of manual commands: the pure limit with a clock passed in, its
place in :func:`control.commands.issue`, and ``ioe control send`` counting in the real
ClickHouse command log (private database), so separate processes share one limit."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from control_helpers import COMMUNITY, make_registry, write_registry

from control.commands import (
    RateCounter,
    RateLimit,
    Requester,
    is_rate_limited,
    issue,
)
from control.store import CommandLog
from ioe.settings import ROOT

NOW = 1_767_225_600_000
S = 1000
BOILER = f"{COMMUNITY}-boiler:0"
REGISTRY = make_registry()


def test_at_most_n_per_device_in_any_minute():
    limit = RateLimit(per_minute=3)
    history = [NOW - 50 * S, NOW - 30 * S, NOW - 10 * S]
    assert limit.refusal(BOILER, history[:2], NOW) is None
    refusal = limit.refusal(BOILER, history, NOW)
    assert refusal == (f"rate limit: 3 manual commands for {BOILER} in the last 60 s (at most "
                       "3); retry in 10 s")
    # the oldest leaves the window 10 s later: one more is allowed, not before
    assert limit.refusal(BOILER, history, NOW + 9_999) is not None
    assert limit.refusal(BOILER, history, NOW + 10 * S) is None
    # commands older than the window, or from the future (a skewed clock), do not count
    assert limit.refusal(BOILER, [NOW - 60 * S, NOW - 61 * S, NOW + 5 * S], NOW) is None


def test_the_limit_is_configurable_and_must_allow_something():
    assert RateLimit(per_minute=1).refusal(BOILER, [NOW - S], NOW) is not None
    assert RateLimit(per_minute=10).refusal(BOILER, [NOW - S] * 9, NOW) is None
    with pytest.raises(ValueError, match="at least 1"):
        RateLimit(per_minute=0)


def ask(requester: str, previous: list[int], **kw):
    return issue(REGISTRY, Requester.parse(requester), kw.pop("device", BOILER),
                 kw.pop("key", "relay"), kw.pop("value", "on"), reason="test", now_ms=NOW,
                 rate_limit=RateLimit(per_minute=2), previous_ms=previous, **kw)


def test_issue_refuses_a_manual_command_over_the_limit_and_it_is_counted():
    full = [NOW - 20 * S, NOW - 5 * S]
    counter = RateCounter()
    outcomes = [ask("operator:ana", full[:1]), ask("operator:ana", full),
                ask("member:m1", full)]
    for issued in outcomes:
        counter.count(issued)
    assert [i.status for i in outcomes] == ["sent", "refused", "refused"]
    assert all(is_rate_limited(i) for i in outcomes[1:])
    assert "rate limit: 2 manual commands" in outcomes[1].refusal
    assert outcomes[1].command.requested_by == "operator:ana"  # who asked, for the log
    assert counter.refused == {BOILER: 2}


def test_rules_dry_runs_and_other_refusals_are_not_rate_limited():
    full = [NOW - 20 * S, NOW - 5 * S]
    rule = issue(REGISTRY, Requester.parse("rule:boiler", {COMMUNITY}), BOILER, "relay", "on",
                 reason="surplus", now_ms=NOW, rate_limit=RateLimit(per_minute=2),
                 previous_ms=full)
    assert rule.status == "sent"  # a rule's renewal is never refused by the manual limit
    assert ask("operator:ana", full, dry_run=True).status == "dry_run"
    other = ask("member:m2", full)  # not theirs: that is the reason given, not the rate
    assert other.status == "refused" and "not theirs" in other.refusal
    assert not is_rate_limited(other)


def test_control_send_counts_in_the_shared_command_log(stack_settings, tmp_path):
    """Three separate ``ioe control send`` processes, limit 2 per minute: the third is
    refused with the reason, exit code 2, and stored as refused. No executor runs, so the
    first two expire — they were sent, so they count."""
    settings = stack_settings
    registry = write_registry(tmp_path / "registry.yaml")
    env = {**os.environ, "IOE_KAFKA": settings.kafka_bootstrap,
           "IOE_TOPIC_PREFIX": settings.topic_prefix,
           "IOE_CLICKHOUSE_DB": settings.clickhouse_database,
           "IOE_CONTROL_RATE_PER_MIN": "2"}

    def send() -> tuple[int, dict, str]:
        done = subprocess.run(
            [sys.executable, "-m", "ioe.cli", "control", "send", "--device", BOILER,
             "--set", "relay=on", "--ttl-s", "0.2", "--registry", str(registry)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        return done.returncode, orjson.loads(done.stdout.splitlines()[-1]), done.stderr

    first, second, third = send(), send(), send()
    assert [first[1]["status"], second[1]["status"]] == ["expired", "expired"]
    code, line, stderr = third
    assert code == 2 and line["status"] == "refused" and line["rate_limited"] is True
    assert "rate limit: 2 manual commands" in line["detail"] and "rate limit" in stderr
    log = CommandLog(settings)
    try:
        rows = log.recent(device_id=BOILER, limit=10)
    finally:
        log.close()
    assert [r["status"] for r in rows] == ["refused", "sent", "sent"]
    assert rows[0]["refusal"].startswith("rate limit:")
    assert rows[0]["requested_by"] == "operator:cli"
