"""Grafana provisioning (infra/grafana): files parse, every panel's datasource exists, every
ClickHouse query runs on the migrated schema of both engines (so tables and columns exist),
every Prometheus metric is one the code or kafka-exporter exports. No Grafana here: structure
and queries are what can be checked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ioe.settings import ROOT

GRAFANA = ROOT / "infra" / "grafana"
KAFKA_EXPORTER_METRICS = {"kafka_consumergroup_lag", "kafka_consumergroup_current_offset",
                          "kafka_topic_partition_current_offset"}


def _datasources() -> dict[str, str]:
    config = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "ioe.yml").read_text())
    assert config["apiVersion"] == 1
    return {d["uid"]: d["type"] for d in config["datasources"]}


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob(
        "*.json"))}


def _targets() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(dashboard, panel, target) for every query, variables included (as pseudo-panels)."""
    found = []
    for name, board in _dashboards().items():
        for panel in board["panels"]:
            found += [(name, panel, t) for t in panel["targets"]]
        for var in board["templating"]["list"]:
            found.append((name, var, {"datasource": var["datasource"], "rawSql": var["query"]}))
    return found


def test_provisioning_files_are_consistent() -> None:
    sources = _datasources()
    assert sources == {"ioe-clickhouse": "grafana-clickhouse-datasource",
                       "ioe-prometheus": "prometheus"}
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ioe.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    assert mounts[path] == "./grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    for service in ("grafana", "prometheus", "clickhouse"):
        for volume in compose["services"][service].get("volumes", []):
            if volume.startswith("./"):
                assert (ROOT / "infra" / volume.split(":")[0][2:]).exists(), volume


def test_dashboards_parse_and_reference_existing_datasources() -> None:
    boards = _dashboards()
    assert set(boards) == {"community-energy.json", "member-balances.json",
                           "device-health.json", "worker-lag.json"}
    assert len({b["uid"] for b in boards.values()}) == len(boards)
    sources = _datasources()
    for name, board in boards.items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in board["panels"]:
            assert panel["targets"], (name, panel["title"])
            for ds in [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]:
                assert sources.get(ds["uid"]) == ds["type"], (name, panel["title"])
    assert _targets()


def _sql(text: str) -> str:
    """Grafana's macros and variables replaced by literals the engines accept."""
    text = re.sub(r"\$__timeFilter\((\w+)\)",
                  r"\1 >= toDateTime(1700000000) AND \1 < toDateTime(1900000000)", text)
    text = text.replace("${community}", "c1").replace("${member}", "m1")
    assert "$" not in text, text
    return text


CLICKHOUSE_QUERIES = [(f"{n}:{p.get('title') or p.get('name')}", t["rawSql"])
                      for n, p, t in _targets() if t["datasource"]["uid"] == "ioe-clickhouse"]


@pytest.mark.parametrize("label,sql", CLICKHOUSE_QUERIES, ids=[q[0] for q in CLICKHOUSE_QUERIES])
def test_clickhouse_panels_run_on_the_schema(warehouse: Any, label: str, sql: str) -> None:
    from wh_data import load

    load(warehouse)
    warehouse.engine.execute(f"USE {warehouse.db}")
    rows = warehouse.engine.execute(_sql(sql))
    assert isinstance(rows, list), label


def test_prometheus_metrics_exist() -> None:
    sources = "\n".join(p.read_text() for d in ("streams", "connectors", "dashboards")
                        for p in (ROOT / d).rglob("*.py"))
    exprs = [t["expr"] for _, _, t in _targets() if t["datasource"]["uid"] == "ioe-prometheus"]
    assert exprs
    for expr in exprs:
        for metric in re.findall(r"\b((?:ioe|kafka)_[a-z_]+)\b", expr):
            if metric.startswith("kafka_"):
                assert metric in KAFKA_EXPORTER_METRICS, expr
            else:
                base = metric.removesuffix("_total")
                assert f'"{base}"' in sources, f"{metric}: no such metric in the code"


def test_scraped_targets_are_compose_services() -> None:
    compose = yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())
    prometheus = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
    for job in prometheus["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            assert target.split(":")[0] in compose["services"], target
    assert Path(GRAFANA / "prometheus.yml").is_file()
