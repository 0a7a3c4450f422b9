"""`make bench`: run every benchmark scenario against the real local stack.

Each scenario module exposes ``run(quick) -> dict`` with a list of figures; every figure carries
this project's value and a baseline measured in the same run, so the ratio means something on
any machine. Results are printed as a table and written to ``bench/results/<timestamp>.json``
so commits can be compared.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
import traceback
from pathlib import Path
from typing import Any

SCENARIOS = (
    ("worker", "bench.bench_worker", "ingest throughput and live latency through the worker"),
    ("scaling", "bench.bench_worker_scaling",
     "1 and 2 workers on 8 communities over 4 partitions vs a raw consumer"),
    ("memory", "bench.bench_worker_memory", "worker RSS holding 10,000 devices' state"),
    ("recovery", "bench.bench_worker_recovery",
     "worker restart to ready with 100,000 devices' state: rocksdb vs memory"),
    ("mqtt", "bench.bench_mqtt_bridge", "MQTT bridge throughput vs a bare paho subscriber"),
    ("modbus", "bench.bench_modbus_edge", "Modbus edge points/s vs raw pymodbus reads"),
    ("websocket", "bench.bench_ws_fanout", "websocket fan-out latency vs a bare uvicorn echo"),
    ("clickhouse", "bench.bench_clickhouse", "monthly settlement query over a year"),
    ("pipeline", "bench.bench_pipeline", "Kafka→worker→ClickHouse ingest, meter→websocket latency"),
    ("anomalies", "bench.anomaly_eval", "anomaly precision / recall / detection delay"),
    ("optimise", "bench.bench_optimise", "coefficient optimisation: a year × 30/150 members"),
)


def _figures(result: Any) -> list[dict[str, Any]]:
    if isinstance(result, dict) and isinstance(result.get("figures"), list):
        return list(result["figures"])
    if isinstance(result, dict):
        return [{"name": k, "value": v, "baseline": None, "unit": ""} for k, v in result.items()
                if isinstance(v, int | float)]
    return []


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "—" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller, faster runs")
    parser.add_argument("--only", action="append", help="scenario name (repeatable)")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "quick": args.quick, "scenarios": {}}
    rows = []
    for name, module_name, description in SCENARIOS:
        if args.only and name not in args.only:
            continue
        print(f"== {name}: {description}", flush=True)
        try:
            module = importlib.import_module(module_name)
            result = module.run(quick=args.quick)
        except ModuleNotFoundError as exc:
            print(f"   skipped: {exc}")
            results["scenarios"][name] = {"skipped": str(exc)}
            continue
        except Exception as exc:  # one broken scenario must not hide the others
            traceback.print_exc()
            results["scenarios"][name] = {"error": repr(exc)}
            continue
        results["scenarios"][name] = result
        for figure in _figures(result):
            value, baseline = figure.get("value"), figure.get("baseline")
            ratio = (value / baseline if isinstance(value, int | float)
                     and isinstance(baseline, int | float) and baseline else None)
            figure.setdefault("ratio", ratio)
            rows.append((name, figure.get("name", ""), value, baseline, figure.get("ratio"),
                         figure.get("unit", "")))
    print()
    header = ("scenario", "figure", "ioe", "baseline", "ratio", "unit")
    widths = [12, 58, 12, 12, 8, 10]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        cells = [row[0], row[1][:58], _fmt(row[2]), _fmt(row[3]), _fmt(row[4]), row[5]]
        print("  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
