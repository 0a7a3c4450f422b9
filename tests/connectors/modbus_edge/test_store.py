"""The durable outbox: FIFO, survives reopening, bounded by its disk budget (oldest dropped)."""

from __future__ import annotations

import sqlite3

from connectors.modbus_edge.store import ROW_OVERHEAD, Outbox


def test_fifo_and_durable_across_reopen(tmp_path):
    path = tmp_path / "q.sqlite"
    box = Outbox(path)
    box.put_many([("t", b"k", f"v{i}".encode()) for i in range(10)])
    rows = box.peek(4)
    assert [r.value for r in rows] == [b"v0", b"v1", b"v2", b"v3"]
    box.delete([rows[0].seq, rows[1].seq])
    box.close()
    again = Outbox(path)
    assert len(again) == 8
    assert [r.value for r in again.peek(100)] == [f"v{i}".encode() for i in range(2, 10)]
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    again.close()


def test_budget_drops_the_oldest_and_counts_them(tmp_path):
    row = ROW_OVERHEAD + 1 + 10  # key b"k" + 10-byte value
    box = Outbox(tmp_path / "q.sqlite", budget_bytes=5 * row)
    dropped = sum(box.put_many([("t", b"k", f"value-{i:04d}".encode())]) for i in range(12))
    assert dropped == 7
    assert box.dropped_total() == 7
    assert [r.value for r in box.peek(100)] == [f"value-{i:04d}".encode() for i in range(7, 12)]
    assert box.size_bytes == 5 * row
    box.close()
    assert Outbox(tmp_path / "q.sqlite").dropped_total() == 7


def test_example_config_is_valid(tmp_path):
    from pathlib import Path

    import yaml

    import connectors.modbus_edge as package
    from connectors.modbus_edge.agent import config_from_dict

    example = Path(package.__file__).parent / "edge.example.yaml"
    config = config_from_dict(yaml.safe_load(example.read_text()))
    assert [d.id for d in config.devices] == ["inv-huawei-1", "inv-sunspec-1", "meter-sdm630-1"]
    huawei = config.devices[0]
    assert huawei.delay_after_connect_s == 1.5 and huawei.unit == 1
    assert config.devices[2].link_key == ("rtu", "/dev/ttyUSB0")
