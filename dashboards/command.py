"""``ioe web``: serve the live websocket, the history API and the dashboards with uvicorn.

One process per instance; run several behind a load balancer to scale (each consumes every
partition of ``ioe.live``, so any instance can serve any client).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import uvicorn

from dashboards.security import TRUSTED_PROXIES_ENV, trusted_proxies_from_env
from dashboards.ws import ORIGINS_ENV, origins_from_env
from ioe.logsafe import uvicorn_log_config
from ioe.settings import get_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--registry", default=None,
                        help="registry YAML (default IOE_REGISTRY); the ioe.registry topic "
                             "is followed as well")
    parser.add_argument("--no-follow-registry", action="store_true",
                        help="use only the registry file, ignore the ioe.registry topic")
    parser.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="a web origin (https://host[:port]) whose pages may open the "
                             "websocket, besides the server's own host; repeat for several "
                             f"(also {ORIGINS_ENV}, comma-separated)")
    parser.add_argument("--coefficient-reports", default=None, metavar="DIR",
                        help="where `ioe coefficients optimise --out DIR/ --report` writes its "
                             "reports, shown in the control centre (default "
                             ".local/coefficient-reports)")
    parser.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDRESS",
                        help="a reverse proxy (address or network, * = any) whose "
                             "X-Forwarded-For / X-Forwarded-Proto are believed; repeat for "
                             f"several (also {TRUSTED_PROXIES_ENV}, comma-separated). Without "
                             "one these headers are ignored")


def run(args: argparse.Namespace) -> int:
    from dashboards.app import create_app

    settings = get_settings()
    if args.registry:
        settings = dataclasses.replace(settings, registry_path=Path(args.registry))
    origins = [*origins_from_env(), *args.allow_origin]
    app = create_app(settings, follow_registry=not args.no_follow_registry,
                     allowed_origins=origins,
                     trusted_proxies=[*trusted_proxies_from_env(), *args.trusted_proxy],
                     coefficient_reports=Path(args.coefficient_reports)
                     if args.coefficient_reports else None)
    # small frames only come from clients; the token is in a frame, never in the URL, but a
    # client may still put one there: the access log goes through the same safe filter.
    # uvicorn's own proxy headers are off: it would trust 127.0.0.1 by default, and the app
    # applies them itself, only for the configured --trusted-proxy (dashboards.security)
    uvicorn.run(app, host=args.host, port=args.port, ws_max_size=64 * 1024,
                log_level="info", log_config=uvicorn_log_config("info"), proxy_headers=False)
    return 0
