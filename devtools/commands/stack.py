"""``ioe stack up|down|status``: the local servers (see :mod:`devtools.stack`)."""

from __future__ import annotations

import argparse
import os
import sys

from devtools import stack


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--only", action="append", choices=[s.name for s in stack.SERVERS],
                        help="act on one server only (repeatable)")
    parser.add_argument("--brokers", type=int, choices=(1, 3), default=1,
                        help="with 'up': Kafka brokers (3 = a KRaft cluster on 9092/9094/9096 "
                             "with replication 3 and min.insync.replicas 2)")
    parser.add_argument("--secure", action="store_true",
                        help="with 'up': also the external listeners edges use — Mosquitto "
                             "TLS with client certificates and ACL on 8883, Kafka SASL_SSL "
                             "(SCRAM-SHA-512) with ACLs on 9094 (see docs/security.md)")
    parser.add_argument("--no-schema", action="store_true",
                        help="with 'up': do not create topics nor apply migrations")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "up":
            only = args.only
            if args.brokers > 1 and (not only or "kafka" in only):
                from devtools.kafka_cluster import up_cluster

                # the schema step (and every process started from this shell) uses all brokers
                os.environ["IOE_KAFKA"] = up_cluster(stack.get_settings(), args.brokers)
                only = [s.name for s in stack.SERVERS
                        if s.name != "kafka" and (not args.only or s.name in args.only)]
            secure = (stack.default_secure_options(stack.get_settings()) if args.secure
                      else None)
            if args.secure and args.brokers > 1:
                print("ioe stack up: --secure is for the single broker", file=sys.stderr)
                return 2
            if only is None or only:
                stack.up(only=only, secure=secure)
            if not args.no_schema and not args.only:
                from ioe.commands.schema import apply_schema

                apply_schema()
            return 0
        if args.action == "down":
            stack.down(only=args.only)
            if not args.only or "kafka" in args.only:
                from devtools.kafka_cluster import down_cluster

                down_cluster(stack.get_settings())
            return 0
        return 0 if stack.status() else 1
    except stack.StackError as exc:
        print(f"ioe stack {args.action}: {exc}", file=sys.stderr)
        return 1
