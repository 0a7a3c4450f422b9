"""Alarm lifecycle: hysteresis, one open alarm per (subject, kind), re-notification only on a
severity rise, deterministic ids, state that survives serialisation."""

from __future__ import annotations

import orjson

from streams.anomalies.config import Hysteresis
from streams.anomalies.lifecycle import CLEAR, AlarmBook, Condition, alarm_id

H = Hysteresis(open_n=3, open_s=120.0, close_n=2, close_s=60.0)


def run(book: AlarmBook, pattern: str, *, step_s: int = 60, t0: int = 0,
        severities: str | None = None, hysteresis: Hysteresis = H):
    """pattern: one char per evaluation, '1' = condition holds, '0' = clear."""
    events = []
    for i, c in enumerate(pattern):
        sev = {"w": "warning", "c": "critical", "i": "info"}[severities[i]] if severities else \
            "warning"
        cond = Condition(True, sev, {"t": t0 + i * step_s * 1000}) if c == "1" else CLEAR
        events += book.evaluate(community_id="c1", subject="dev1", member_id="m1", kind="k",
                                condition=cond, now_ms=t0 + i * step_s * 1000,
                                hysteresis=hysteresis)
    return events


def test_opens_only_after_n_evaluations_and_t_seconds():
    book = AlarmBook()
    # 3 evaluations at 0, 60, 120 s: count reached at 120 s and 120 s held -> opens at index 2
    events = run(book, "111")
    assert [(e.state, e.opened_at_ms) for e in events] == [("open", 120_000)]
    assert events[0].evidence["condition_since_ms"] == 0
    # n reached but not t: evaluations every 10 s need 120 s -> opens at index 12
    book2 = AlarmBook()
    events = run(book2, "1" * 13, step_s=10)
    assert [e.opened_at_ms for e in events] == [120_000]


def test_flapping_condition_never_opens():
    book = AlarmBook()
    assert run(book, "110110110110110") == []
    assert book.tracks == {}  # nothing left behind by a clear evaluation


def test_one_open_alarm_per_subject_and_kind_no_duplicates():
    book = AlarmBook()
    events = run(book, "1" * 50)
    assert len(events) == 1 and events[0].state == "open"
    # a short clear gap shorter than the close hysteresis keeps the same alarm open
    events = run(book, "0" + "1" * 10, t0=50 * 60_000)
    assert events == []
    assert len(book.open_alarms()) == 1


def test_close_hysteresis_and_reopen_gets_new_id():
    book = AlarmBook()
    opened = run(book, "111")[0]
    # clear twice: second clear at +60 s -> closes (close_n=2, close_s=60)
    closed = run(book, "00", t0=180_000)
    assert [(e.state, e.alarm_id, e.closed_at_ms) for e in closed] == [
        ("closed", opened.alarm_id, 240_000)]
    assert closed[0].version == 2 and closed[0].opened_at_ms == opened.opened_at_ms
    again = run(book, "111", t0=600_000)
    assert len(again) == 1 and again[0].alarm_id != opened.alarm_id


def test_interrupted_clear_restarts_close_hysteresis():
    book = AlarmBook()
    run(book, "111")
    assert run(book, "0101010", t0=180_000) == []  # never two clear in a row
    assert len(book.open_alarms()) == 1


def test_renotify_only_when_severity_rises():
    book = AlarmBook()
    events = run(book, "1111111", severities="wwwwccw")
    assert [(e.state, e.severity, e.version) for e in events] == [
        ("open", "warning", 1), ("open", "critical", 2)]
    assert events[0].alarm_id == events[1].alarm_id
    # dropping back to warning, or staying critical, is not news
    assert run(book, "111", t0=600_000, severities="wcw") == []


def test_alarm_id_is_deterministic():
    assert alarm_id("c", "d", "k", 5) == alarm_id("c", "d", "k", 5)
    assert alarm_id("c", "d", "k", 5) != alarm_id("c", "d", "k", 6)
    a = run(AlarmBook(), "111")[0]
    b = run(AlarmBook(), "111")[0]
    assert a.alarm_id == b.alarm_id


def test_state_round_trips_through_json_mid_hysteresis():
    pattern = "1101111100011111000"
    uninterrupted = run(AlarmBook(), pattern)
    book = AlarmBook()
    first = run(book, pattern[:6])
    restored = AlarmBook.from_dict(orjson.loads(orjson.dumps(book.to_dict())))
    rest = run(restored, pattern[6:], t0=6 * 60_000)
    assert [e.to_message() for e in first + rest] == [e.to_message() for e in uninterrupted]


def test_message_format():
    msg = run(AlarmBook(), "111")[0].to_message()
    assert set(msg) == {"v", "alarm_id", "community_id", "device_id", "member_id", "kind",
                        "severity", "state", "opened_at_ms", "closed_at_ms", "evidence",
                        "updated_at_ms", "version"}
    assert msg["v"] == 1 and msg["state"] == "open" and msg["closed_at_ms"] is None
