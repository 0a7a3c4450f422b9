"""The worker's sink stores every executor's command result, with no ``ioe control`` running.

Executors (Modbus edge, MQTT bridge, OCPP central system) report on ``ioe.command-results``;
before, only a running ``ioe control run``/``send`` stored them, reading from the topic's end, so
a result reported while none ran never reached the command log. The sink is a committed consumer
group: a result waits in Kafka until it is in ClickHouse.
"""

from __future__ import annotations

import pytest
from worker_helpers import WorkerProcess, query, wait_until

from ioe.kafka import make_producer
from ioe.messages import CommandResult, CommandStatus
from ioe.topics import COMMAND_RESULTS

pytestmark = pytest.mark.stack

T = 1_780_000_000_000


def result(command_id: str, status: CommandStatus, readback: float | None,
           at_ms: int) -> CommandResult:
    return CommandResult(command_id=command_id, community_id="ce-x", device_id="inv-1",
                         key="power_limit_pct", status=status, requested=50.0,
                         readback=readback, executor="modbus-edge:site-1", executed_at_ms=at_ms,
                         written=[{"register": 40242, "value": 5000}])


def test_results_reported_with_no_control_process_are_stored(stack_settings, tmp_path):
    settings = stack_settings
    producer = make_producer(settings)
    topic = settings.topic(COMMAND_RESULTS)
    # reported before any worker runs: waits in Kafka
    producer.send(topic, key="ce-x", value=result("c-1", CommandStatus.EXPIRED, None, T).encode())
    producer.send(topic, key="ce-x", value=b"{not json")  # skipped and counted, not a crash
    producer.flush()
    worker = WorkerProcess(settings, tmp_path, "w1")
    try:
        # the same command reported again later, acknowledged: the later report wins
        producer.send(topic, key="ce-x",
                      value=result("c-1", CommandStatus.ACKNOWLEDGED, 50.0, T + 2000).encode())
        producer.send(topic, key="ce-x",
                      value=result("c-2", CommandStatus.FAILED, 100.0, T + 3000).encode())
        producer.flush()

        def stored():
            return query(settings, "SELECT command_id, status, readback, executor, written, "
                                   "toUnixTimestamp(executed_at) FROM {db}.command_results "
                                   "FINAL ORDER BY command_id")

        rows = wait_until(lambda: len(stored()) == 2 and stored()[0][1] == "acknowledged"
                          and stored(), 120, "both results in ClickHouse")
        assert rows == [
            ("c-1", "acknowledged", "50.0", "modbus-edge:site-1",
             '[{"register":40242,"value":5000}]', (T + 2000) // 1000),
            ("c-2", "failed", "100.0", "modbus-edge:site-1",
             '[{"register":40242,"value":5000}]', (T + 3000) // 1000),
        ]
    finally:
        producer.close()
        worker.stop()
    assert "Traceback" not in worker.log_text()
