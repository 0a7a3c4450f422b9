"""``ioe worker``: run one stream worker (run several to share the partitions).

Builds the Faust app of :mod:`streams.app` from the command line and runs a Faust worker in
this process. A worker killed with SIGKILL and restarted loses nothing: its tables come back
from their changelog topics, uncommitted readings are reprocessed into SET-semantics state, and
the ClickHouse sink commits only after inserting.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ioe.settings import get_settings

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--web-port", type=int, default=None,
                        help="serve Faust's web interface on this port (default: disabled)")
    parser.add_argument("--bind", default="127.0.0.1",
                        help="address of the web (/ready) and metrics ports (default 127.0.0.1; "
                             "0.0.0.0 in a container)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus metrics on this port (default: disabled)")
    parser.add_argument("--lateness-s", type=float, default=300.0,
                        help="allowed lateness before an interval is first emitted (s)")
    parser.add_argument("--staleness-s", type=float, default=120.0,
                        help="a device silent longer than this is unknown in the live view (s)")
    parser.add_argument("--live-interval-s", type=float, default=1.0,
                        help="minimum time between two live recomputes of a community (s)")
    parser.add_argument("--emit-min-s", type=float, default=1.0,
                        help="minimum time between two re-emissions of late intervals (s)")
    parser.add_argument("--max-gap-s", type=float, default=1800.0,
                        help="readings further apart are a hole: interval incomplete (s)")
    parser.add_argument("--stall-s", type=float, default=60.0,
                        help="restart the process when readings wait and none was processed "
                             "for this long (0 = never)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="Faust data directory (default: <local dir>/faust/<worker id>)")
    parser.add_argument("--workers-id", default="ioe-worker",
                        help="application id shared by the workers of one deployment")
    parser.add_argument("--no-sink", action="store_true", help="do not write to ClickHouse")
    parser.add_argument("--rules", type=Path, action="append", default=[], metavar="FILE",
                        help="a community's rule file (repeat for several): this worker "
                             "evaluates it for the communities it owns and sends the commands "
                             "(see `ioe control rules validate`)")
    parser.add_argument("--store", choices=("memory", "rocksdb"), default="memory",
                        help="table storage: memory (rebuilt from the changelogs at each start) "
                             "or rocksdb (on disk under --data-dir: state that outgrows memory, "
                             "and a restart reads only the changelog written since)")
    parser.add_argument("--sink-flush-s", type=float, default=1.0,
                        help="insert into ClickHouse at least this often (s)")


def run(args: argparse.Namespace) -> int:
    import faust

    from streams.app import WorkerConfig, create_app

    settings = get_settings()
    data_dir = args.data_dir or settings.local_dir / "faust" / (
        f"{settings.topic_prefix}{args.workers_id}")
    config = WorkerConfig(
        stall_s=args.stall_s,
        lateness_s=args.lateness_s, staleness_s=args.staleness_s,
        live_interval_s=args.live_interval_s, emit_min_s=args.emit_min_s,
        max_gap_s=args.max_gap_s, web_port=args.web_port, bind=args.bind, data_dir=Path(data_dir),
        worker_id=args.workers_id, sink=not args.no_sink, sink_flush_s=args.sink_flush_s,
        rule_files=tuple(args.rules), store=args.store,
        log_level=logging.getLevelName(logging.getLogger().level).lower(),
    )
    config.data_dir.mkdir(parents=True, exist_ok=True)
    app, ctx = create_app(settings, config)
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr=args.bind, registry=ctx.metrics)
    log.info("worker %s: topics prefix %r, ClickHouse db %s", app.conf.id,
             settings.topic_prefix, settings.clickhouse_database)
    worker = faust.Worker(app, loglevel=config.log_level, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
