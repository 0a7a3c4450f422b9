"""OCPP results reach the same command log as the Modbus and MQTT executors' results.

Real stack, private Kafka topics and a private ClickHouse database: the central system and a
simulated wallbox execute, ``control.run.store_results`` (the follower ``ioe control run``
runs) stores every result of ``ioe.command-results`` into ``command_results``, and
:meth:`control.store.CommandLog.recent` — the query behind ``ioe control log`` and the control
centre — shows who asked, why, what was written and what the charger read back, for an
acknowledged, a failed and an expired command."""

from __future__ import annotations

import dataclasses
import threading
import time

import orjson
from chargers import SimulatedCharger
from control_helpers import make_registry

from control.bus import now_ms, send_command
from control.commands import Issued, Requester, issue
from control.ocpp.central import EXECUTOR, CentralSystem
from control.run import store_results
from control.store import CommandLog
from ioe.kafka import make_producer

THREE_PHASE = {"id": "ev-3p", "role": "consumption", "member": "m2",
               "protocol": {"type": "ocpp", "charge_point": "CP-3P", "phases": 3,
                            "min_current_a": 6, "max_current_a": 32, "controllable": True}}


def test_ocpp_results_are_stored_with_their_commands(stack_settings, unique_id):
    settings = stack_settings
    registry = make_registry(extra=[THREE_PHASE])
    central = CentralSystem(settings, registry, host="127.0.0.1", port=0, heartbeat_s=30,
                            timeout_s=5, group_id=f"ocpp-{unique_id}").start()
    sim = SimulatedCharger("CP-1")
    stop, ready = threading.Event(), threading.Event()
    follower = threading.Thread(target=store_results, args=(settings, stop, ready),
                                daemon=True)
    follower.start()
    log = CommandLog(settings)
    producer = make_producer(settings)
    operator = Requester.parse("operator:ana")
    try:
        assert ready.wait(30)
        assert sim.connect(f"ws://127.0.0.1:{central.port}/ocpp") == "Accepted"
        ack = issue(registry, operator, "ev-1", "ev_current_a", 10, reason="evening peak",
                    now_ms=now_ms(), ttl_s=10, revert_s=120)
        # past the issuer's checks (as a command arriving on the topic from elsewhere would
        # be): the central system refuses it itself, writes nothing, and says so
        over = dataclasses.replace(ack.command, command_id=f"over-{unique_id}", value=40)
        # the three-phase charger is not connected: it waits until its deadline and expires
        offline = issue(registry, operator, "ev-3p", "ev_current_a", 8, reason="offline test",
                        now_ms=now_ms(), ttl_s=2)
        issued = [ack, Issued(over, "sent"), offline]
        assert [i.status for i in issued] == ["sent"] * 3
        log.add_commands(issued)  # the issuer stores its commands, as `control send` does
        for i in issued:
            send_command(producer, settings, i.command)

        rows: dict[str, dict] = {}
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            rows = {r["command_id"]: r for r in log.recent(limit=10)}
            if sum(bool(r["result"]) for r in rows.values()) == 3:
                break
            time.sleep(0.5)
        by_id = {i.command.command_id: rows.get(i.command.command_id) for i in issued}
        assert all(r and r["result"] for r in by_id.values()), rows

        stored = by_id[ack.command.command_id]
        assert stored["result"] == "acknowledged" and stored["executor"] == EXECUTOR
        assert stored["requested_by"] == "operator:ana" and stored["reason"] == "evening peak"
        assert orjson.loads(stored["value"]) == 10 and orjson.loads(stored["readback"]) == 10
        (written,) = orjson.loads(stored["written"])
        assert written["action"] == "SetChargingProfile"
        schedule = written["csChargingProfiles"]["chargingSchedule"]
        assert schedule["duration"] == 120  # the command's revert_s, on the wire and in the log
        assert schedule["chargingSchedulePeriod"][0]["limit"] == 10

        refused = by_id[over.command_id]
        assert refused["result"] == "failed" and refused["executor"] == EXECUTOR
        assert "nothing sent" in refused["detail"] and orjson.loads(refused["written"]) == []

        expired = by_id[offline.command.command_id]
        assert expired["result"] == "expired" and expired["executor"] == EXECUTOR
        assert "not connected" in expired["detail"]
        # and the wallbox only ever saw the one acknowledged profile
        assert [p["charging_schedule"]["charging_schedule_period"][0]["limit"]
                for p in sim.set_profiles()] == [10]
    finally:
        stop.set()
        follower.join(10)
        producer.close(timeout=5)
        log.close()
        sim.close()
        central.stop()
