"""``ioe web``: serve the live websocket, the history API and the dashboards with uvicorn.

One process per instance; run several behind a load balancer to scale (each consumes every
partition of ``ioe.live``, so any instance can serve any client).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import uvicorn

from ioe.settings import get_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--registry", default=None,
                        help="registry YAML (default IOE_REGISTRY); the ioe.registry topic "
                             "is followed as well")
    parser.add_argument("--no-follow-registry", action="store_true",
                        help="use only the registry file, ignore the ioe.registry topic")


def run(args: argparse.Namespace) -> int:
    from dashboards.app import create_app

    settings = get_settings()
    if args.registry:
        settings = dataclasses.replace(settings, registry_path=Path(args.registry))
    app = create_app(settings, follow_registry=not args.no_follow_registry)
    # small frames only come from clients; the token is in a frame, never in the URL
    uvicorn.run(app, host=args.host, port=args.port, ws_max_size=64 * 1024,
                log_level="info", proxy_headers=True)
    return 0
