"""IOE_CLICKHOUSE_CLUSTER: ReplicatedReplacingMergeTree + Distributed on two real 18.16 servers
and a real ZooKeeper (started here, on free ports, stopped afterwards). Long: ``pytest -m long``.

One shard, two replicas: rows inserted on one server are replicated to the other; the product's
queries, views and shipped queries read the Distributed tables (original names) with FINAL and
give the hand-worked values on both servers, replays included."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wh_data import (
    ALARM_INSERTS,
    ANOMALY_COLUMNS,
    BALANCE_COLUMNS,
    BALANCE_INSERTS,
    CID,
    READING_COLUMNS,
    READING_INSERTS,
)

from devtools import stack
from ioe.clickhouse import Cluster, ServerEngine, client, migrate_engine
from ioe.settings import ROOT, Settings, get_settings
from warehouse import queries

pytestmark = [pytest.mark.long, pytest.mark.stack]

ZK_POM = ROOT / "infra" / "clickhouse" / "zookeeper" / "pom.xml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _zookeeper_libs(local: Path) -> Path:
    """ZooKeeper's jars from Maven Central, resolved again when the pom changes."""
    libs = local / "zookeeper" / "libs"
    stamp = local / "zookeeper" / "libs.sha256"
    digest = hashlib.sha256(ZK_POM.read_bytes()).hexdigest()
    if not (stamp.exists() and stamp.read_text() == digest):
        if libs.exists():
            shutil.rmtree(libs)
        subprocess.run(["mvn", "-q", "-B", "-f", str(ZK_POM), "dependency:copy-dependencies",
                        f"-DoutputDirectory={libs}"], check=True)
        stamp.write_text(digest)
    return libs


def _wait(check: Any, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.5)


def _pings(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _cluster_xml(zk_port: int, replicas: list[tuple[int, int]], me: int) -> str:
    hosts = "".join(f"<replica><host>127.0.0.1</host><port>{tcp}</port></replica>"
                    for tcp, _ in replicas)
    return f"""<?xml version="1.0"?>
<yandex>
  <zookeeper><node><host>127.0.0.1</host><port>{zk_port}</port></node></zookeeper>
  <remote_servers><ioe><shard><internal_replication>true</internal_replication>{hosts}
  </shard></ioe></remote_servers>
  <macros><shard>01</shard><replica>r{me}</replica></macros>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <interserver_http_port>{replicas[me][1]}</interserver_http_port>
</yandex>
"""


@dataclasses.dataclass
class Node:
    settings: Settings
    engine: ServerEngine


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Node]]:
    base = tmp_path_factory.mktemp("replicated")
    local = get_settings().local_dir
    procs: list[subprocess.Popen[bytes]] = []
    try:
        zk_port = _free_port()
        zk_data = base / "zk"
        zk_data.mkdir()
        libs = _zookeeper_libs(local)
        zk_log = open(base / "zk.log", "ab")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen(
            ["java", "-Xmx256m", "-Dzookeeper.admin.enableServer=false", "-cp", f"{libs}/*",
             "org.apache.zookeeper.server.ZooKeeperServerMain", str(zk_port), str(zk_data)],
            stdout=zk_log, stderr=subprocess.STDOUT, start_new_session=True))
        _wait(lambda: _listens(zk_port), "zookeeper up")
        replicas = [(_free_port(), _free_port()) for _ in range(2)]
        nodes = []
        for me, (tcp, _) in enumerate(replicas):
            settings = dataclasses.replace(get_settings(), clickhouse_port=tcp,
                                           clickhouse_http_port=_free_port())
            home = base / f"ch{me}"
            config = stack._clickhouse_config(settings, home)
            (home / "config.d").mkdir()
            (home / "config.d" / "cluster.xml").write_text(_cluster_xml(zk_port, replicas, me))
            binary = shutil.which("clickhouse-server") or "/usr/sbin/clickhouse-server"
            procs.append(stack._spawn([binary, f"--config-file={config}"], home / "stdout.log",
                                      cwd=home))
            nodes.append(settings)
        for settings in nodes:
            _wait(lambda s=settings: _pings(s.clickhouse_http_port), "clickhouse up")
        yield [Node(s, ServerEngine(client(s))) for s in nodes]
    finally:
        for proc in procs:  # only the processes this fixture started
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _load_local(engine: ServerEngine, db: str) -> None:
    """wh_data's inserts, one by one, into the replicated local tables of one server."""
    for table, columns, inserts in (("balances", BALANCE_COLUMNS, BALANCE_INSERTS),
                                    ("readings", READING_COLUMNS, READING_INSERTS),
                                    ("anomalies", ANOMALY_COLUMNS, ALARM_INSERTS)):
        for rows in inserts:
            engine.insert(f"{db}.{table}_local", columns, rows)


def test_replicated_distributed_settlement(cluster: list[Node]) -> None:
    a, b = cluster
    db = "ioe_repl"
    ioe = Cluster("ioe")
    for node in cluster:
        node.engine.execute(f"DROP DATABASE IF EXISTS {db}")
        migrate_engine(node.engine, db, cluster=ioe)
    engines = dict(a.engine.execute(
        "SELECT name, engine FROM system.tables WHERE database = %(d)s", {"d": db}))
    assert engines["balances_local"] == "ReplicatedReplacingMergeTree"
    assert engines["balances"] == "Distributed"
    assert engines["member_monthly"] == "View"

    _load_local(a.engine, db)
    expected = sum(len(rows) for rows in BALANCE_INSERTS)
    _wait(lambda: b.engine.execute(f"SELECT count() FROM {db}.balances_local")[0][0] == expected,
          "replication to the second server")
    from test_wh_queries import EXPECTED, _same

    for node in cluster:  # both servers, through the Distributed tables and the views
        for name in ("monthly_settlement", "community_ratios", "datadis_reconciliation",
                     "open_alarms"):
            params, want = EXPECTED[name]
            got = queries.run(node.engine, db, name, params)
            assert _same(got, want), (node.settings.clickhouse_port, name, got)
        monthly = node.engine.execute(
            f"SELECT member_id, round(consumption_kwh, 3) FROM {db}.member_monthly "
            "WHERE community_id = %(c)s ORDER BY month, member_id", {"c": CID})
        assert monthly == [("m1", 0.9), ("m2", 0.2), ("m1", 0.5), ("m2", 0.7)]

    # a replay written on the other replica still counts once, everywhere
    b.engine.insert(f"{db}.balances_local", BALANCE_COLUMNS, BALANCE_INSERTS[3])  # identical block
    b.engine.insert(f"{db}.balances_local", BALANCE_COLUMNS, [BALANCE_INSERTS[0][1]])  # v1 again
    time.sleep(1)
    for node in cluster:
        params, want = EXPECTED["monthly_settlement"]
        assert _same(queries.run(node.engine, db, "monthly_settlement", params), want)
    for node in cluster:
        node.engine.execute(f"DROP DATABASE IF EXISTS {db}")
