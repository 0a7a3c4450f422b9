"""A manual override beats a rule while it holds: the rules on its point pause until its
``revert_s`` runs out, then decide afresh. The override is read from the real command log
(ClickHouse), where ``ioe control send`` and the control centre store it."""

from __future__ import annotations

import time

import pytest
from control_helpers import COMMUNITY, community_live, make_registry, member

from control.commands import Issued
from control.run import HOLDS_REFRESH_MS, ControlLoop
from control.store import CommandLog
from ioe.messages import Command

pytestmark = pytest.mark.stack

RULES = f"""\
community: {COMMUNITY}
rules:
  - id: export-limit
    kind: export_limit
    inverter: inv-1
    max_export_kw: 5
    rated_kw: 10
    revert_s: 60
  - id: boiler-m1
    kind: surplus_load
    member: m1
    device: {COMMUNITY}-boiler:0
    on_above_w: 1500
    off_below_w: 200
    for_s: 0
"""


def manual(device: str, key: str, value: object, issued_ms: int, revert_s: int,
           who: str = "operator:ana") -> Issued:
    return Issued(Command(command_id=f"manual-{issued_ms}", community_id=COMMUNITY,
                          device_id=device, key=key, value=value, requested_by=who,
                          reason="mantenimiento", issued_at_ms=issued_ms,
                          deadline_ms=issued_ms + 30_000, revert_s=revert_s), "sent")


def test_rules_pause_on_an_overridden_point_and_resume_after_it(stack_settings, tmp_path):
    now = int(time.time() * 1000)
    log = CommandLog(stack_settings)
    log.add_commands([manual("inv-1", "power_limit_pct", 50, now - 10_000, 60)])
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES)
    loop = ControlLoop(stack_settings, make_registry(), [rules_file], store=log, send=False)
    try:
        loop.apply_message(community_live(9000, now))  # 4 kW over the 5 kW allowed
        loop.apply_message(member(3000, now))
        issued = loop.step(now)
        # the inverter's rule is paused (an operator holds its point for 50 s more); the
        # boiler's rule, on another point, acts as usual
        assert [i.command.rule_id for i in issued] == ["boiler-m1"]
        later = now + 51_000 + HOLDS_REFRESH_MS
        loop.apply_message(community_live(9000, later))
        loop.apply_message(member(3000, later))
        resumed = [i.command for i in loop.step(later)]
        assert [c.rule_id for c in resumed] == ["export-limit"]
        assert resumed[0].value == 60  # 100 − ⌈4,000 / 10,000 · 100⌉, decided afresh
    finally:
        loop.close()
        log.close()


def test_an_override_of_another_point_or_a_rules_own_command_pauses_nothing(
        stack_settings, tmp_path):
    now = int(time.time() * 1000)
    log = CommandLog(stack_settings)
    log.add_commands([
        manual("inv-1", "connected", "on", now - 1000, 600),        # another key
        manual("inv-1", "power_limit_pct", 40, now - 1000, 600, who="rule:export-limit"),
        manual("inv-1", "power_limit_pct", 30, now - 700_000, 600),  # ran out long ago
    ])
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES)
    loop = ControlLoop(stack_settings, make_registry(), [rules_file], store=log, send=False)
    try:
        loop.apply_message(community_live(9000, now))
        assert [i.command.rule_id for i in loop.step(now)] == ["export-limit"]
    finally:
        loop.close()
        log.close()
