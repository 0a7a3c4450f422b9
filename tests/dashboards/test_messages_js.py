"""``dashboards/static/messages.js`` against ``ioe/messages.py``: the field and channel names the
JavaScript clients read are exactly those of the Python message definitions (pure test: the JS
is parsed with regular expressions, nothing is run).

A field renamed, added or dropped on either side makes this fail; so does a client that spells
a live message field itself instead of taking it from messages.js.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from ioe.messages import (
    Alarm,
    AlarmState,
    Channel,
    ChannelKind,
    GeneratorPower,
    LiveAlarm,
    LiveCommunity,
    LiveMember,
    PlantPower,
    Severity,
)

STATIC = Path(__file__).resolve().parents[2] / "dashboards" / "static"
SOURCE = (STATIC / "messages.js").read_text(encoding="utf-8")

MEMBER = LiveMember("c", "m", 1, 0.5, 1.0, 0.5, 0.2, 0.2, 0.3, 0.0, False)
COMMUNITY = LiveCommunity("c", 1, 1.0, 1.0, 1.0, 0.0, 0.0, 1, 1)
ALARM = Alarm("a", "c", "d", "m", "device_offline", "warning", "open", 1, None, {}, 1)


def exported_objects(source: str) -> dict[str, dict[str, str]]:
    """``export const NAME = Object.freeze({ key: "value", … })`` → {NAME: {key: value}}."""
    objects = {}
    for name, body in re.findall(r"export const ([A-Z_]+) = Object\.freeze\(\{(.*?)\}\);", source,
                                 re.S):
        pairs = re.findall(r'(\w+):\s*"([^"]*)"', body)
        assert len(pairs) == body.count(":"), f"{name}: only key: \"string\" entries expected"
        assert len({k for k, _ in pairs}) == len(pairs), f"{name}: duplicate key"
        objects[name] = dict(pairs)
    return objects


OBJECTS = exported_objects(SOURCE)


def names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


@pytest.mark.parametrize(("js", "expected"), [
    ("MEMBER", names(LiveMember)),
    ("COMMUNITY", names(LiveCommunity)),
    ("PLANT", names(PlantPower)),
    ("GENERATOR", names(GeneratorPower)),
    ("LIVE_ALARM", names(LiveAlarm)),
    ("ALARM", names(Alarm)),
    ("TYPE", {LiveMember.TYPE, LiveCommunity.TYPE, LiveAlarm.TYPE}),
    ("ALARM_STATE", {s.value for s in AlarmState}),
    ("SEVERITY", {s.value for s in Severity}),
    ("CHANNEL_KIND", {k.value for k in ChannelKind}),
])
def test_js_names_are_the_dataclass_fields(js: str, expected: set[str]) -> None:
    values = list(OBJECTS[js].values())
    assert len(values) == len(set(values)), f"{js} names a field twice"
    assert set(values) == expected


@pytest.mark.parametrize(("js", "message"), [
    ("MEMBER", MEMBER), ("COMMUNITY", COMMUNITY), ("ALARM", ALARM),
])
def test_js_fields_are_the_wire_keys(js: str, message: LiveMember | LiveCommunity | Alarm
                                     ) -> None:
    """What the browser receives is ``to_dict()``: its keys are the envelope plus the fields."""
    wire = set(message.to_dict())
    envelope = set(OBJECTS["LIVE"].values()) if js != "ALARM" else {"v"}
    assert wire == set(OBJECTS[js].values()) | envelope


def test_envelope_is_what_every_live_message_shares() -> None:
    shared = set(MEMBER.to_dict()) & set(COMMUNITY.to_dict()) & set(
        LiveAlarm.for_alarm(ALARM)[0].to_dict())
    assert set(OBJECTS["LIVE"].values()) == shared
    for message in (MEMBER, COMMUNITY, *LiveAlarm.for_alarm(ALARM)):
        assert message.to_dict()[OBJECTS["LIVE"]["type"]] == message.TYPE


def channel_templates(source: str) -> dict[str, tuple[list[str], str]]:
    """``name: (a, b) => `template``` entries of ``export const channel``."""
    body = re.search(r"export const channel = Object\.freeze\(\{(.*?)\}\);", source, re.S)
    assert body is not None, "messages.js exports no channel helpers"
    return {name: ([a.strip() for a in args.split(",") if a.strip()], template)
            for name, args, template in re.findall(r"(\w+): \(([^)]*)\) => `([^`]*)`",
                                                   body.group(1))}


def render(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], template)


def test_channel_helpers_build_the_python_channel_names() -> None:
    templates = channel_templates(SOURCE)
    expected = {"member": Channel.member("ce-x", "m-7"), "community": Channel.community("ce-x"),
                "operators": Channel.operators("ce-x")}
    assert set(templates) == set(expected)
    for name, channel in expected.items():
        args, template = templates[name]
        values = dict(zip(args, ["ce-x", "m-7"], strict=False))
        built = render(template, values)
        assert built == str(channel)
        assert Channel.parse(built) == channel


#: live field names that the clients also meet elsewhere, spelt directly there: REST answers
#: of another shape (the overview's members carry a "coefficient" and its "plants", device
#: health a "device_id" and "member_id", the schedule a "kind"), the "stale" CSS class, and
#: the LiveClient's own connection "state"
ELSEWHERE = {"coefficient", "member_id", "device_id", "plants", "kind", "stale", "state"}


@pytest.mark.parametrize("client", ["common.js", "member.js", "control.js"])
def test_clients_take_live_names_from_messages_js(client: str) -> None:
    text = (STATIC / client).read_text(encoding="utf-8")
    live = set().union(*(OBJECTS[n].values() for n in ("MEMBER", "COMMUNITY", "PLANT",
                                                         "GENERATOR", "ALARM")))
    assert "assigned_w" in live and "alarm_id" in live  # the check below has teeth
    # property reads on values (not on the messages.js constants, which are all capitals)
    spelt = {attr for obj, attr in re.findall(r"([A-Za-z_$][\w$]*)\??\.(\w+)", text)
             if not obj.isupper()}
    quoted = set(re.findall(r"""["'](\w+)["']""", text))
    found = (spelt | quoted) & (live - ELSEWHERE)
    assert not found, f"{client} spells live fields itself: {sorted(found)}"
    templates = re.findall(r"`(member|community|operators):\$\{", text)
    assert not templates, f"{client} builds channel names itself"
    if client != "common.js":
        assert re.search(r'from "\./messages\.js"', text), f"{client} does not use messages.js"
