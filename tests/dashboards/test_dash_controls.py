"""Device controls in the web (``/api/communities/{cid}/controls``): what each controllable
device holds now, and a manual override from the control centre or the member's app.

The override goes the whole way a command goes — checked like ``ioe control send``, stored in
the ClickHouse command log, sent on the real ``ioe.commands.<community>`` topic — and its state is read
back from the log. The executor's side (the edge writing the inverter) is played by storing its
result with the control package's own writer, as the edge's result reaches the log."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import orjson
import pytest
import yaml
from dash_helpers import CID, REGISTRY_YAML, LiveServer
from kafka import KafkaConsumer, TopicPartition

from control.store import CommandLog
from dashboards import tokens
from ioe.messages import Command, CommandResult
from ioe.registry import parse_registry
from ioe.settings import Settings
from ioe.topics import commands_topic

pytestmark = pytest.mark.stack

HEATER = "shelly-termo-m1:0"


def registry_with_controls():  # noqa: ANN201
    """The dashboards' test registry, with an inverter on Modbus and m1's water heater."""
    document = yaml.safe_load(REGISTRY_YAML)
    community = document["communities"][0]
    for device in community["devices"]:
        if device["id"] == "inv-1":
            device["protocol"] = {"type": "modbus", "host": "127.0.0.1", "port": 5020,
                                  "unit": 1, "map": "sunspec"}
    community["devices"] += [
        {"id": HEATER, "role": "consumption", "member": "m1", "expected_interval_s": 10,
         "protocol": {"type": "mqtt", "decoder": "shelly-gen1", "topic_id": "shelly-termo-m1",
                      "controllable": True}},
        {"id": "shelly-plug-m2", "role": "consumption", "member": "m2",
         "expected_interval_s": 10,  # a plug the registry does not mark controllable
         "protocol": {"type": "mqtt", "decoder": "tasmota", "topic_id": "plug-m2"}}]
    return parse_registry(document)


@pytest.fixture
def server(stack_settings: Settings, server_factory: Callable[..., LiveServer]) -> LiveServer:
    return server_factory(stack_settings, registry=registry_with_controls())


def call(server: LiveServer, token: str, method: str = "GET", body: object = None
         ) -> httpx.Response:
    return httpx.request(method, f"{server.url}/api/communities/{CID}/controls",
                         headers={"authorization": f"Bearer {token}"},
                         content=None if body is None else orjson.dumps(body), timeout=30)


def operator(server: LiveServer) -> str:
    return tokens.issue(server.settings, role="operator", communities=[CID], name="marta")[0]


def commands_on_topic(settings: Settings, command_id: str, timeout_s: float = 20) -> list[dict]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                             enable_auto_commit=False)
    topic = settings.topic(commands_topic(CID))
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout_s
        found: list[dict] = []
        while time.monotonic() < deadline and not found:
            for records in consumer.poll(timeout_ms=500).values():
                found += [m for r in records if (m := orjson.loads(r.value))["command_id"]
                          == command_id]
        return found
    finally:
        consumer.close()


def test_who_sees_which_controls(server: LiveServer) -> None:
    shown = call(server, operator(server)).json()["devices"]
    assert {d["device_id"]: d["key"] for d in shown} == {"inv-1": "power_limit_pct",
                                                          HEATER: "relay"}
    heater = next(d for d in shown if d["device_id"] == HEATER)
    assert heater["words"] == ["on", "off"] and heater["value"] is None
    inverter = next(d for d in shown if d["device_id"] == "inv-1")
    assert (inverter["unit"], inverter["minimum"], inverter["maximum"]) == ("%", 0, 100)
    mine = call(server, server.token(member="m1")).json()["devices"]
    assert [d["device_id"] for d in mine] == [HEATER]  # theirs and controllable only
    assert call(server, server.token(member="m2")).json()["devices"] == []
    other = tokens.issue(server.settings, role="operator", communities=["ce-other"])[0]
    assert call(server, other).status_code == 403


def test_an_override_needs_confirmation_permission_and_bounds(server: LiveServer) -> None:
    op = operator(server)
    limit = {"device_id": "inv-1", "key": "power_limit_pct", "value": 50, "expires_s": 600}
    unconfirmed = call(server, op, "POST", limit)
    assert unconfirmed.status_code == 400
    assert unconfirmed.json()["error"] == "confirmation_required"
    member = server.token(member="m1")
    assert call(server, member, "POST", {**limit, "confirm": True}).status_code == 403
    neighbour = call(server, server.token(member="m2"), "POST",
                     {"device_id": HEATER, "key": "relay", "value": "on", "confirm": True})
    assert neighbour.status_code == 403
    too_much = call(server, op, "POST", {**limit, "value": 150, "confirm": True})
    assert too_much.status_code == 422 and too_much.json()["status"] == "refused"
    assert "150" in too_much.json()["refusal"]
    short = call(server, op, "POST", {**limit, "expires_s": 5, "confirm": True})
    assert short.status_code == 400
    own = call(server, member, "POST", {"device_id": HEATER, "key": "relay", "value": "on",
                                        "expires_s": 900, "confirm": True})
    assert own.status_code == 202 and own.json()["requested_by"] == "member:m1"
    # acknowledged, the relay holds "on" — with no device-side revert (a relay has no timer):
    # the 900 s only pause the rules on it
    log = CommandLog(server.settings)
    try:
        log.add_results([CommandResult(own.json()["command_id"], CID, HEATER, "relay",
                                       "acknowledged", "on", "on", "mqtt-bridge",
                                       int(time.time() * 1000))])
    finally:
        log.close()
    heater = call(server, member).json()["devices"][0]
    assert heater["value"] == "on" and heater["expires_at_ms"] is None
    assert heater["override_by"] == "member:m1"


def test_an_override_is_sent_logged_held_and_shown_once_read_back(server: LiveServer) -> None:
    before = int(time.time() * 1000)
    sent = call(server, operator(server), "POST",
                {"device_id": "inv-1", "key": "power_limit_pct", "value": 50, "expires_s": 600,
                 "reason": "mantenimiento del inversor", "confirm": True})
    assert sent.status_code == 202, sent.text
    answer = sent.json()
    assert answer["status"] == "sent" and answer["requested_by"] == "operator:marta"
    on_topic = commands_on_topic(server.settings, answer["command_id"])
    assert len(on_topic) == 1
    assert (on_topic[0]["device_id"], on_topic[0]["value"], on_topic[0]["revert_s"]) == \
        ("inv-1", 50, 600)
    shown = {d["device_id"]: d for d in call(server, operator(server)).json()["devices"]}
    inverter = shown["inv-1"]
    assert inverter["override_by"] == "operator:marta"
    assert before + 600_000 <= inverter["override_until_ms"] <= before + 600_000 + 60_000
    assert inverter["last_state"] == "pending" and inverter["value"] is None
    # the edge acknowledges with its read-back: the device now holds 50 %, until 600 s later
    command = Command.from_dict(on_topic[0])
    executed = command.issued_at_ms + 1500
    log = CommandLog(server.settings)
    try:
        log.add_results([CommandResult(command.command_id, CID, "inv-1", "power_limit_pct",
                                       "acknowledged", 50, 50, "modbus-edge:e1", executed)])
    finally:
        log.close()
    inverter = {d["device_id"]: d for d in call(server, operator(server)).json()["devices"]
                }["inv-1"]
    assert inverter["value"] == 50 and inverter["last_state"] == "acknowledged"
    assert inverter["since_ms"] == executed and inverter["expires_at_ms"] == executed + 600_000
    assert inverter["requested_by"] == "operator:marta"
    assert inverter["reason"] == "mantenimiento del inversor"


@pytest.mark.browser
def test_the_control_centre_asks_before_it_sends_an_override(server: LiveServer,
                                                              browser) -> None:  # noqa: ANN001
    from browser_helpers import DESKTOP, axe_violations, open_page, see
    from playwright.sync_api import expect

    errors: list[str] = []
    page = open_page(browser, server, "/control", operator(server), errors=errors,
                     device=DESKTOP)
    row = "#controls-table tr[data-device='inv-1']"
    expect(page.locator("#controls-table tbody tr")).to_have_count(2)
    see(page, f"{row} [data-field=held]", "—")
    page.fill(f"{row} input[name=value]", "40")
    page.select_option(f"{row} select[name=expires_s]", "3600")
    page.click(f"{row} button[type=submit]")
    dialog = page.locator("#ctl-confirm")
    expect(dialog).to_be_visible()
    expect(dialog.locator("[data-field=confirm-text]")).to_contain_text(
        "inv-1: power_limit_pct = 40 % durante 1 h")
    assert axe_violations(page) == []
    page.click("#ctl-confirm-cancel")
    see(page, "#ctl-status", "Orden cancelada: no se ha enviado nada.")
    assert call(server, operator(server)).json()["commands"] == []  # nothing was sent
    page.click(f"{row} button[type=submit]")
    page.click("#ctl-confirm-send")
    expect(page.locator("#ctl-status")).to_contain_text("Orden enviada a inv-1")
    expect(page.locator(f"{row} [data-field=override]")).to_contain_text("operator:marta")
    expect(page.locator("#commands-table tbody tr").first).to_contain_text("power_limit_pct = 40")
    logged = call(server, operator(server)).json()["commands"]
    assert [(c["device_id"], c["value"], c["requested_by"], c["revert_s"]) for c in logged] == \
        [("inv-1", 40, "operator:marta", 3600)]
    # a value outside the point's range is stopped by the form itself (the server refuses it
    # too: test_an_override_needs_confirmation_permission_and_bounds)
    page.fill(f"{row} input[name=value]", "150")
    page.click(f"{row} button[type=submit]")
    expect(page.locator(f"{row} input[name=value]:invalid")).to_have_count(1)
    expect(dialog).to_be_hidden()
    assert len(call(server, operator(server)).json()["commands"]) == 1
    page.select_option("#lang", "en")
    see(page, "#h-controls", "Device control")
    assert errors == [], errors


@pytest.mark.browser
def test_a_member_sees_and_switches_only_their_own_device(server: LiveServer,
                                                          browser) -> None:  # noqa: ANN001
    from browser_helpers import axe_violations, open_page
    from playwright.sync_api import expect

    errors: list[str] = []
    page = open_page(browser, server, "/member", server.token(member="m1"), errors=errors)
    row = f"#controls-table tr[data-device='{HEATER}']"
    expect(page.locator("#my-controls")).to_be_visible()
    expect(page.locator("#controls-table tbody tr")).to_have_count(1)  # theirs only
    page.select_option(f"{row} select[name=value]", "on")
    page.click(f"{row} button[type=submit]")
    expect(page.locator("#ctl-confirm [data-field=confirm-text]")).to_contain_text(
        f"{HEATER}: relay = encendido durante 15 min")
    page.click("#ctl-confirm-send")
    expect(page.locator("#ctl-status")).to_contain_text(f"Orden enviada a {HEATER}")
    expect(page.locator("#my-commands li")).to_contain_text(
        f"{HEATER}: relay = encendido · member:m1 · pendiente")
    assert axe_violations(page) == []
    # a member with no controllable device sees no controls at all
    other = open_page(browser, server, "/member", server.token(member="m2"), errors=errors)
    expect(other.locator("#h-health")).to_be_visible()
    expect(other.locator("#my-controls")).to_be_hidden()
    assert errors == [], errors
