"""``Command`` and ``CommandResult`` on the wire: round trips and the fields they refuse."""

from __future__ import annotations

import orjson
import pytest

from control.commands import Issued
from control.store import command_rows, result_rows
from ioe.messages import (
    COMMAND_COLUMNS,
    COMMAND_RESULT_COLUMNS,
    Command,
    CommandResult,
    MessageError,
    column_names,
)

CMD = Command("c1", "ce", "inv-1", "power_limit_pct", 40, "operator:ana", "why", 1000, 31000,
              600, None, False)
RESULT = CommandResult("c1", "ce", "inv-1", "power_limit_pct", "acknowledged", 40, 40.0,
                       "modbus-edge", 2000, "ok", [{"address": 40127, "registers": [400]}])


@pytest.mark.parametrize("message", [CMD, RESULT])
def test_round_trip(message):
    assert type(message).decode(message.encode()) == message


@pytest.mark.parametrize("value", [None, "on", 12.5])
def test_values_none_words_numbers(value):
    command = Command(**{**{f: getattr(CMD, f) for f in CMD.__dataclass_fields__},
                         "value": value})
    assert Command.decode(command.encode()).value == value


@pytest.mark.parametrize("change,field", [
    ({"v": 2}, "v"), ({"deadline_ms": "soon"}, "deadline_ms"), ({"value": [1]}, "value"),
    ({"value": float("inf")}, "value"), ({"command_id": None}, "command_id"),
])
def test_command_refuses_bad_fields(change, field):
    data = {**CMD.to_dict(), **change}
    with pytest.raises(MessageError) as caught:
        Command.from_dict(data)
    assert caught.value.field == field


def test_result_refuses_unknown_status():
    with pytest.raises(MessageError, match="status"):
        CommandResult.decode(orjson.dumps({**RESULT.to_dict(), "status": "done"}))


def test_rows_follow_the_columns():
    (command_row,) = command_rows([Issued(CMD, "sent")])
    assert len(command_row) == len(COMMAND_COLUMNS) + 4
    named = dict(zip(column_names(COMMAND_COLUMNS), command_row, strict=False))
    assert named["value"] == "40" and named["deadline"] == 31 and named["rule_id"] == ""
    (result_row,) = result_rows([RESULT])
    named = dict(zip(column_names(COMMAND_RESULT_COLUMNS), result_row, strict=False))
    assert named["readback"] == "40.0" and orjson.loads(named["written"])[0]["registers"] == [400]
    # a later "acknowledged" wins over an "expired" reported in the same millisecond
    expired = CommandResult.expired(CMD, "control", 2000)
    assert result_rows([RESULT])[0][-1] > result_rows([expired])[0][-1]
