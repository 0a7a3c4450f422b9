"""``ioe edge enrol|revoke|renew|list|request``: the identities of the edges; and
``ioe edge push-config|logs|restart``: their remote maintenance (:mod:`ioe.edge.maintenance`).

Run on the control centre (where the CA and the roster live), except ``request``, which runs
on the edge to make its key there and print a CSR for ``enrol --csr``. Every change re-renders
the secure Mosquitto's ACL and CRL and sends it SIGHUP, so it applies from the next connection
without restarting anything. Nothing secret is printed: the bundle's secrets are files (0600).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from ioe.edge.bundle import Endpoints
from ioe.edge.ca import EDGE_DAYS
from ioe.edge.identity import EdgeId, IdentityError


def _host_port(value: str, default_port: int) -> tuple[str, int]:
    host, _, port = value.rpartition(":") if ":" in value else (value, "", str(default_port))
    return host, int(port)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", type=Path,
                        help="state directory of the CA and roster (default IOE_EDGE_DIR or "
                             "<IOE_LOCAL_DIR>/edge)")
    sub = parser.add_subparsers(dest="action", required=True)
    enrol = sub.add_parser("enrol", help="issue an edge's certificate and write its bundle")
    enrol.add_argument("--community", required=True)
    enrol.add_argument("--edge", required=True)
    enrol.add_argument("--out", required=True, type=Path, help="bundle directory")
    enrol.add_argument("--csr", type=Path,
                       help="sign this CSR (from `ioe edge request` on the edge) instead of "
                            "making the key here")
    enrol.add_argument("--days", type=int, default=EDGE_DAYS, help="certificate lifetime")
    host = os.environ.get("IOE_SECURE_HOST", "127.0.0.1")  # as `ioe stack up --secure`
    enrol.add_argument("--mqtt", default=f"{host}:8883",
                       help="secure MQTT listener as the edge dials it (HOST:PORT; default "
                            "IOE_SECURE_HOST:8883)")
    enrol.add_argument("--kafka", default=f"{host}:9094",
                       help="SASL_SSL Kafka listener as the edge dials it (default "
                            "IOE_SECURE_HOST:9094), or 'none'")
    enrol.add_argument("--topic-prefix", default="", help="Kafka topic prefix of the edge")
    revoke = sub.add_parser("revoke", help="refuse an edge from its next connection on")
    revoke.add_argument("edge")
    revoke.add_argument("--community", help="needed when two communities have an edge so named")
    renew = sub.add_parser("renew", help="rotate an edge's key and certificate")
    renew.add_argument("edge")
    renew.add_argument("--community")
    renew.add_argument("--out", type=Path, help="bundle directory (default: where enrol wrote)")
    renew.add_argument("--csr", type=Path)
    renew.add_argument("--days", type=int, default=EDGE_DAYS)
    listing = sub.add_parser("list", help="each edge, its certificate's expiry, its last contact")
    listing.add_argument("--no-contact", action="store_true",
                         help="do not ask the broker for the edges' last heartbeats")
    maintenance = {
        "push-config": "send a new device list / register map / poll interval; the edge "
                       "validates and applies it without restarting, or refuses it",
        "logs": "the edge's recent log lines (secrets redacted on the edge)",
        "restart": "the edge's agent flushes its store and re-executes itself"}
    for name, text in maintenance.items():
        action = sub.add_parser(name, help=text)
        action.add_argument("edge")
        action.add_argument("--community")
        action.add_argument("--as", dest="requester", default=f"operator:{_user()}",
                            help="who asks, operator:<name> (default operator:$USER); "
                                 "recorded with the action")
        action.add_argument("--ttl", type=float, default=60.0,
                            help="seconds after which the edge no longer executes it")
        action.add_argument("--timeout", type=float, default=30.0,
                            help="seconds to wait for the edge's answer")
        if name == "push-config":
            action.add_argument("--file", required=True, type=Path, help="edge YAML config")
        if name == "logs":
            action.add_argument("--lines", type=int, default=100)
    files = sub.add_parser("broker-files", help="write the secure listeners' files (broker "
                           "certificate, Kafka keystore, ACL, CRL) for brokers run elsewhere "
                           "(the compose file's secure-init) and print their paths as JSON")
    files.add_argument("--name", action="append", dest="names",
                       help="a name the broker certificate is valid for (repeatable; default "
                            "this machine, IOE_SECURE_NAMES and IOE_SECURE_HOST)")
    request = sub.add_parser("request", help="on the edge: make its key (0600) and print a CSR")
    request.add_argument("--community", required=True)
    request.add_argument("--edge", required=True)
    request.add_argument("--out", required=True, type=Path, help="where edge.key is written")


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


MAINTENANCE = ("push-config", "logs", "restart")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (IdentityError, KeyError, ValueError, RuntimeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"ioe edge {args.action}: {message}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.action == "request":
        from ioe.edge.ca import make_request
        from ioe.edge.files import private_dir, write_file

        edge = EdgeId(args.community, args.edge)
        private_dir(args.out)
        request_pem = make_request(edge.principal, args.out / "edge.key")
        write_file(args.out / "edge.csr", request_pem)
        print(f"key {args.out / 'edge.key'} (0600, stays here); request {args.out / 'edge.csr'}")
        return 0
    if args.action in MAINTENANCE:
        return _maintain(args)
    from ioe.edge.authority import EdgeAuthority
    from ioe.edge.kafka_access import KafkaAccess
    from ioe.settings import get_settings

    settings = get_settings()
    # granted through the loopback listener of the control centre's broker (IOE_KAFKA)
    access: KafkaAccess | None = KafkaAccess(
        settings.kafka_bootstrap,
        topic_prefix=getattr(args, "topic_prefix", "") or settings.topic_prefix)
    if args.action == "enrol" and args.kafka.lower() == "none":
        access = None
    authority = EdgeAuthority(args.state, kafka=access)
    if args.action == "broker-files":
        import json

        from ioe.edge.authority import server_names_from_env

        names = tuple(args.names) if args.names else server_names_from_env()
        print(json.dumps({"names": list(names), **authority.broker_files(names).as_dict()}))
        return 0
    if args.action == "enrol":
        edge = EdgeId(args.community, args.edge)
        host, port = _host_port(args.mqtt, 8883)
        kafka = None if args.kafka.lower() == "none" else args.kafka
        csr: bytes | None = args.csr.read_bytes() if args.csr else None
        bundle = authority.enrol(edge, args.out, Endpoints(host, port, kafka), csr=csr,
                                 days=args.days, topic_prefix=args.topic_prefix)
        record = authority.roster.edges[edge]
        print(f"enrolled {edge} as {edge.principal}; certificate until "
              f"{record.certificates[-1].not_after:%Y-%m-%d}; bundle {bundle.directory}")
        return 0
    if args.action == "revoke":
        from ioe.edge.kafka_access import KafkaAccessError

        try:
            record = authority.revoke(args.edge, args.community)
        except KafkaAccessError as exc:
            # the MQTT side is already done (CRL, ACL, SIGHUP); only Kafka is left
            print(f"ioe edge revoke: refused on MQTT, but Kafka failed: {exc}; run the same "
                  "command again when Kafka is reachable", file=sys.stderr)
            return 1
        print(f"revoked {record.id}: refused from its next connection")
        return 0
    if args.action == "renew":
        renew_csr: bytes | None = args.csr.read_bytes() if args.csr else None
        bundle = authority.renew(args.edge, args.community, args.out, csr=renew_csr, days=args.days)
        record = authority.roster.edges[bundle.id]
        print(f"renewed {bundle.id}; certificate until "
              f"{record.certificates[-1].not_after:%Y-%m-%d}; bundle {bundle.directory} "
              "(restart the edge's agent to use it)")
        return 0
    return _list(authority, contact=not args.no_contact)


def _list(authority: object, *, contact: bool) -> int:
    from ioe.edge.authority import EdgeAuthority
    from ioe.edge.heartbeat import last_contacts
    from ioe.settings import get_settings

    assert isinstance(authority, EdgeAuthority)
    rows = authority.status()
    beats = {}
    if contact and rows:
        settings = get_settings()
        beats = last_contacts(settings.mqtt_host, settings.mqtt_port)
    print(f"{'community':<20} {'edge':<20} {'state':<8} {'expires':<11} {'last contact':<21} "
          f"version  uptime")
    now_ms = dt.datetime.now(dt.UTC).timestamp() * 1000
    for row in rows:
        beat = beats.get(row.id)
        expires = f"{row.not_after:%Y-%m-%d}" if row.not_after else "-"
        if beat is None:
            seen, version, uptime = "never" if contact else "-", "-", "-"
        else:
            at = dt.datetime.fromtimestamp(beat.sent_ms / 1000, dt.UTC)
            ago = max(0, int((now_ms - beat.sent_ms) / 1000))
            seen = f"{at:%Y-%m-%d %H:%M} ({ago}s)"
            version, uptime = beat.version, f"{int(beat.uptime_s)}s"
        print(f"{row.id.community:<20} {row.id.edge:<20} {row.state:<8} {expires:<11} "
              f"{seen:<21} {version:<8} {uptime}")
    return 0


def _maintain(args: argparse.Namespace) -> int:
    """Send one maintenance action on the control centre's loopback MQTT listener, print the
    edge's outcome, record both in the state directory's journal."""
    from ioe.edge.authority import default_state_dir
    from ioe.edge.maintenance import (
        ActionKind,
        MaintenanceAction,
        MaintenanceJournal,
        OutcomeStatus,
        request,
    )
    from ioe.edge.roster import Roster
    from ioe.settings import get_settings

    settings = get_settings()
    state = args.state or default_state_dir(settings)
    record = Roster(state / "edges.json").find(args.edge, args.community)
    if not record.active:
        raise ValueError(f"{record.id} is revoked")
    kind = ActionKind(args.action)
    values: dict[str, object] = {}
    if kind is ActionKind.PUSH_CONFIG:
        values["config"] = args.file.read_text(encoding="utf-8")
    if kind is ActionKind.LOGS:
        values["lines"] = args.lines
    action = MaintenanceAction.new(kind, args.requester, ttl_s=args.ttl, **values)
    outcome = request(settings.mqtt_host, settings.mqtt_port, record.id, action,
                      journal=MaintenanceJournal(state), timeout_s=args.timeout)
    if outcome is None:
        print(f"ioe edge {args.action}: no answer from {record.id} in {args.timeout:g} s "
              f"(it will not execute it after {args.ttl:g} s)", file=sys.stderr)
        return 2
    for line in outcome.lines:
        print(line)
    summary = f"{record.id}: {outcome.status}" + (f": {outcome.detail}" if outcome.detail
                                                  else "")
    if outcome.config_version:
        summary += f" (config {outcome.config_version})"
    ok = outcome.status in (OutcomeStatus.APPLIED, OutcomeStatus.DONE, OutcomeStatus.RESTARTING)
    print(summary, file=sys.stderr if outcome.lines or not ok else sys.stdout)
    return 0 if ok else 1
