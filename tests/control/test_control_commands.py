"""Permissions and bounds of commands (pure): who may ask what of which device."""

from __future__ import annotations

import pytest
from control_helpers import COMMUNITY, make_registry

from control.commands import Requester, bound, check_command, issue, parse_set
from ioe.messages import Command

NOW = 1_767_225_600_000
REGISTRY = make_registry()


def ask(requester: str, device: str, key: str, value, **kw):
    return issue(REGISTRY, Requester.parse(requester, kw.pop("communities", None)), device,
                 key, value, reason="test", now_ms=NOW, **kw)


def test_operator_sends_with_a_deadline():
    issued = ask("operator:ana", "inv-1", "power_limit_pct", 50, ttl_s=20, revert_s=600)
    assert issued.status == "sent" and issued.refusal == ""
    c = issued.command
    assert (c.community_id, c.device_id, c.key, c.value) == (COMMUNITY, "inv-1",
                                                             "power_limit_pct", 50)
    assert c.requested_by == "operator:ana" and c.deadline_ms == NOW + 20_000
    assert c.revert_s == 600 and not c.expired(NOW + 20_000) and c.expired(NOW + 20_001)


def test_operator_of_another_community_is_refused():
    issued = ask("operator:ana", "inv-1", "power_limit_pct", 50, communities={"ce-other"})
    assert issued.status == "refused" and "does not operate community ce-ctl" in issued.refusal


def test_a_member_of_another_community_with_the_same_id_is_refused():
    """Member ids are unique inside a community only: m1 of ce-other is not ce-ctl's m1."""
    issued = ask("member:m1", f"{COMMUNITY}-boiler:0", "relay", "on", communities={"ce-other"})
    assert issued.status == "refused" and "does not belong to community ce-ctl" in issued.refusal
    assert ask("member:m1", f"{COMMUNITY}-boiler:0", "relay", "on",
               communities={COMMUNITY}).status == "sent"


def test_member_controls_own_controllable_device_only():
    assert ask("member:m1", f"{COMMUNITY}-boiler:0", "relay", "on").status == "sent"
    other = ask("member:m2", f"{COMMUNITY}-boiler:0", "relay", "on")
    assert other.status == "refused" and "not theirs" in other.refusal
    unmarked = ask("member:m2", f"{COMMUNITY}-plus:0", "relay", "on")
    assert unmarked.status == "refused" and "controllable" in unmarked.refusal
    inverter = ask("member:m1", "inv-1", "power_limit_pct", 10)
    assert inverter.status == "refused"


@pytest.mark.parametrize("device,key,value,why", [
    ("inv-1", "power_limit_pct", 150, "outside [0, 100]"),
    ("inv-1", "power_limit_pct", "abc", "not a number"),
    ("inv-1", "relay", "on", "does not apply"),
    ("inv-1", "warp_drive", 1, "unknown control key"),
    (f"{COMMUNITY}-boiler:0", "relay", "maybe", "one of on, off"),
    (f"{COMMUNITY}-boiler:0", "relay", None, "'none' is not allowed"),
    ("ev-1", "ev_current_a", 20, "outside [0, 16]"),  # the charger's own max_current_a
    ("meter-m2", "relay", "on", "no control path"),
    ("nope", "relay", "on", "unknown device"),
    ("datadis:ES0021380404050463BV", "relay", "on", "distributor's meter"),
])
def test_out_of_bounds_and_unknown_are_refused(device, key, value, why):
    issued = ask("operator:ana", device, key, value)
    assert issued.status == "refused" and why in issued.refusal


def test_values_are_normalised():
    boiler = REGISTRY.device(f"{COMMUNITY}-boiler:0")
    assert bound("relay", "ON", boiler) == "on" and bound("relay", True, boiler) == "on"
    assert bound("power_limit_pct", "50.0", REGISTRY.device("inv-1")) == 50
    assert bound("power_limit_pct", None, REGISTRY.device("inv-1")) is None
    assert parse_set("power_limit_pct=none") == ("power_limit_pct", None)
    assert parse_set("relay=on") == ("relay", "on")
    assert parse_set("ev_current_a=10.5") == ("ev_current_a", 10.5)


def test_dry_run_is_not_sent():
    assert ask("operator:ana", "inv-1", "power_limit_pct", 50, dry_run=True).status == "dry_run"


def test_a_rule_acts_only_in_its_own_community():
    mine = Command("r:1", COMMUNITY, "inv-1", "power_limit_pct", 40, "rule:export", "why",
                   NOW, NOW + 30_000, 300, "export")
    assert check_command(REGISTRY, mine).status == "sent"
    assert check_command(REGISTRY, mine).command.command_id == "r:1"
    foreign = Command("r:2", "ce-other", "inv-1", "power_limit_pct", 40, "rule:export", "why",
                      NOW, NOW + 30_000, 300, "export")
    assert check_command(REGISTRY, foreign).status == "refused"
