"""Unknown and undecodable sources: real dead letters produced to the test's ``ioe.deadletter``
topic are followed by the server and listed to operators (REST), grouped per origin and reason.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from dash_helpers import CID, OTHER, LiveServer, wait_for

from dashboards.deadletters import DeadLetterBook
from ioe.deadletter import dead_letter, encode_dead_letter
from ioe.kafka import make_producer
from ioe.topics import DEADLETTER

pytestmark = pytest.mark.stack

BIG = '{"power": ' + "1" * 500 + "}"


def letters() -> list[dict[str, Any]]:
    t0 = 1_780_000_000_000
    return [
        dead_letter(source="mqtt-bridge", reason="unknown_device", detail="no device shelly-x:0",
                    payload=b'{"apower": 12.5}', origin="shellies/shelly-x/status/switch:0",
                    received_at_ms=t0),
        dead_letter(source="mqtt-bridge", reason="unknown_device", detail="no device shelly-x:0",
                    payload=b'{"apower": 13.0}', origin="shellies/shelly-x/status/switch:0",
                    received_at_ms=t0 + 10_000),
        dead_letter(source="mqtt-bridge", reason="no_decoder", detail="no decoder for topic",
                    payload=BIG, origin="acme/meter-7/telemetry", received_at_ms=t0 + 5_000),
        dead_letter(source="mqtt-bridge", reason="decode_error", detail="not JSON",
                    payload=b"\xff\xfe\x00", origin="tele/sonoff-3/SENSOR",
                    received_at_ms=t0 + 1_000),
        # not an onboarding matter: a valid device sent an impossible value
        dead_letter(source="mqtt-bridge", reason="invalid_reading", detail="power_w is NaN",
                    payload=b"{}", origin="shellies/shelly-m1/status/switch:0",
                    received_at_ms=t0),
        # attributed to another community: not shown to this community's operators
        dead_letter(source="mqtt-bridge", reason="decode_error", detail="bad",
                    payload=b"x", origin="other/topic", received_at_ms=t0,
                    extra={"community_id": OTHER}),
    ]


def produce_letters(server: LiveServer, records: list[dict[str, Any]]) -> None:
    producer = make_producer(server.settings)
    try:
        producer.send(server.settings.topic(DEADLETTER), key=b"mqtt-bridge", value=b"{garbage")
        for record in records:
            producer.send(server.settings.topic(DEADLETTER), key=record["source"],
                          value=encode_dead_letter(record))
        producer.flush(30)
    finally:
        producer.close()


def get(server: LiveServer, path: str, token: str) -> httpx.Response:
    return httpx.get(server.url + path, headers={"authorization": f"Bearer {token}"},
                     timeout=30)


def test_operators_see_unknown_and_undecodable_sources(live_server: LiveServer) -> None:
    produce_letters(live_server, letters())
    book = live_server.app.state.deadletters
    wait_for(lambda: len(book.sources) == 4 and book.unreadable == 1,
             what="the dead letters to reach the server")
    response = get(live_server, f"/api/communities/{CID}/deadletters",
                   live_server.token(role="operator", member=None))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reasons"] == ["no_decoder", "unknown_device", "decode_error"]
    rows = {(s["origin"], s["reason"]): s for s in body["sources"]}
    assert list(rows) == [  # most recently seen first
        ("shellies/shelly-x/status/switch:0", "unknown_device"),
        ("acme/meter-7/telemetry", "no_decoder"),
        ("tele/sonoff-3/SENSOR", "decode_error"),
    ]
    shelly = rows[("shellies/shelly-x/status/switch:0", "unknown_device")]
    assert (shelly["count"], shelly["first_seen_ms"], shelly["last_seen_ms"]) == (
        2, 1_780_000_000_000, 1_780_000_010_000)
    assert shelly["sample"] == '{"apower": 13.0}'  # the latest payload
    assert shelly["detail"] == "no device shelly-x:0" and shelly["source"] == "mqtt-bridge"
    sample = rows[("acme/meter-7/telemetry", "no_decoder")]["sample"]
    assert sample == BIG[:200] + "…"  # truncated
    assert rows[("tele/sonoff-3/SENSOR", "decode_error")]["sample"] == "base64://4A"
    health = httpx.get(live_server.url + "/health", timeout=10).json()
    assert health["deadletters"] == {"consuming": True, "error": None, "sources": 4}


def test_dead_letters_are_for_operators_of_the_community(live_server: LiveServer) -> None:
    produce_letters(live_server, letters())
    book = live_server.app.state.deadletters
    wait_for(lambda: len(book.sources) == 4, what="the dead letters")
    member = get(live_server, f"/api/communities/{CID}/deadletters", live_server.token())
    assert member.status_code == 403 and member.json()["error"] == "forbidden"
    foreign = get(live_server, f"/api/communities/{OTHER}/deadletters",
                  live_server.token(role="operator", member=None))
    assert foreign.status_code == 403
    other = get(live_server, f"/api/communities/{OTHER}/deadletters",
                live_server.token(role="operator", community=OTHER, member=None)).json()
    # its own attributed source, plus the unattributed ones every operator may onboard
    assert sorted((s["origin"], s["reason"]) for s in other["sources"]) == [
        ("acme/meter-7/telemetry", "no_decoder"),
        ("other/topic", "decode_error"),
        ("shellies/shelly-x/status/switch:0", "unknown_device"),
        ("tele/sonoff-3/SENSOR", "decode_error"),
    ]


def test_the_book_is_bounded() -> None:
    book = DeadLetterBook(max_sources=3, sample_chars=5)
    for i in range(5):
        book.add(dead_letter(source="s", reason="unknown_device", detail="d",
                             payload="abcdefgh", origin=f"t/{i}", received_at_ms=1000 + i))
    assert [s.origin for s in book.for_community(CID)] == ["t/4", "t/3", "t/2"]
    assert book.sources[("t/4", "unknown_device")].sample == "abcde…"
