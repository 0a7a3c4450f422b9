"""The web application: live websocket, REST history API and the static clients.

``create_app(settings, …)`` builds one independent instance (its own hub, metrics, token
verifier, Kafka consumers and registry follower), so tests and benchmarks can run several in
one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from dashboards import tokens
from dashboards.api import Api, ApiContext, json_response, openapi_document
from dashboards.deadletters import DeadLetterBook
from dashboards.hub import Hub, Limits
from dashboards.live import Batch, TopicTail
from dashboards.metrics import WebMetrics
from dashboards.security import FailureLimiter, SecureStarlette, trusted_proxies_from_env
from dashboards.store import Store
from dashboards.ws import Connection, WsContext, normalize_origin, origins_from_env
from ioe.messages import MessageError, decode_live
from ioe.registry import Community, Registry, load_registry
from ioe.registry_follower import RegistryFollower
from ioe.settings import Settings, get_settings
from ioe.topics import DEADLETTER, LIVE

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGES = {"/": "index.html", "/member": "member.html", "/tablet": "tablet.html",
         "/control": "control.html"}
#: pages that are another page's file with its ``data-layout`` changed (one member page for
#: the phone and the household tablet): name → (file, layout)
LAYOUTS = {"tablet.html": ("member.html", "tablet")}
#: served from the root so that the service worker's scope covers every page
ROOT_FILES = {"/sw.js": ("sw.js", "text/javascript"),
              "/manifest.webmanifest": ("manifest.webmanifest", "application/manifest+json")}


class LiveRouter:
    """Turns consumed ``ioe.live`` batches into hub updates (on the event loop).

    Each value is decoded once into its typed message (``ioe.messages.decode_live``); the hub
    routes the typed message and forwards the value bytes themselves to the clients."""

    def __init__(self, hub: Hub, metrics: WebMetrics) -> None:
        self.hub, self.metrics = hub, metrics
        self.last_message_at: float | None = None

    def deliver(self, batch: Batch) -> None:
        for key, value in batch:
            try:
                message = decode_live(value or b"null")
            except MessageError as exc:
                reason = "not_json" if exc.field == "$" and exc.message.startswith("not JSON") \
                    else "invalid"
                self.metrics.live_bad.labels(reason).inc()
                log.error("unroutable ioe.live message (key %r): %s", key, exc)
                continue
            self.hub.publish(message, value)
            self.metrics.live_messages.inc()
            self.last_message_at = time.time()


def create_app(settings: Settings | None = None, *, registry: Registry | None = None,
               consume: bool = True, follow_registry: bool = True, limits: Limits | None = None,
               heartbeat_s: float = 15.0, backfill: int = 200, deadletter_backfill: int = 1000,
               static_dir: Path | None = None,
               allowed_origins: Iterable[str] | None = None,
               coefficient_reports: Path | None = None,
               trusted_proxies: Iterable[str] | None = None,
               auth_limiter: FailureLimiter | None = None) -> Starlette:
    """One web instance. ``allowed_origins``: web origins whose pages may open the websocket
    besides the server's own host (default: ``IOE_WEB_ORIGINS``); ``coefficient_reports``:
    where the optimiser's reports are (default ``<local dir>/coefficient-reports``);
    ``trusted_proxies``: peers whose ``X-Forwarded-*`` headers are believed (default
    ``IOE_WEB_TRUSTED_PROXIES``); ``auth_limiter``: the failed-authentication limit (default
    from ``IOE_WEB_AUTH_MAX_FAILURES`` / ``IOE_WEB_AUTH_WINDOW_S``). Security headers and the
    limit are ``dashboards.security``'s."""
    settings = settings or get_settings()
    registry = registry if registry is not None else load_registry(settings.registry_path)
    hub = Hub()
    metrics = WebMetrics()
    verifier = tokens.Verifier(settings)
    router = LiveRouter(hub, metrics)
    ws_ctx = WsContext(hub=hub, verifier=verifier, registry=registry, metrics=metrics,
                       limits=limits or Limits(), heartbeat_s=heartbeat_s,
                       allowed_origins=frozenset(normalize_origin(o) for o in (
                           origins_from_env() if allowed_origins is None
                           else allowed_origins)))
    deadletters = DeadLetterBook()
    api = Api(ApiContext(registry=registry, verifier=verifier, store=Store(settings),
                         metrics=metrics, deadletters=deadletters,
                         coefficient_reports=coefficient_reports or
                         Path(settings.local_dir) / "coefficient-reports"))
    static = static_dir or STATIC_DIR
    consumers: list[TopicTail] = []

    def registry_changed(community_id: str, community: Community | None) -> None:
        metrics.registry_updates.inc()

    follower = RegistryFollower(settings, registry, on_change=registry_changed) \
        if follow_registry and consume else None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        if consume:
            consumer = TopicTail(settings, LIVE, router.deliver, backfill=backfill)
            consumers.append(consumer)
            tasks.append(asyncio.create_task(consumer.run(), name="ioe-live"))
            dead = TopicTail(settings, DEADLETTER, deadletters.deliver,
                             backfill=deadletter_backfill)
            consumers.append(dead)
            tasks.append(asyncio.create_task(dead.run(), name="ioe-deadletter"))
        if follower is not None:
            tasks.append(asyncio.create_task(follower.run(), name="ioe-registry"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if api.ctx.commands is not None:
                api.ctx.commands.close()

    async def ws_endpoint(websocket: WebSocket) -> None:
        await Connection(websocket, ws_ctx).run()

    async def health(request: Request) -> Response:
        consumer = consumers[0] if consumers else None
        live = {"consuming": bool(consumer and consumer.ready.is_set()),
                "error": consumer.error if consumer else None,
                "last_message_age_s": None if router.last_message_at is None
                else round(time.time() - router.last_message_at, 1)}
        ok = consumer is None or consumer.error is None
        dead = consumers[1] if len(consumers) > 1 else None
        return json_response({"status": "ok" if ok else "degraded", "live": live,
                              "clients": len(hub.sessions),
                              "communities": sorted(registry.communities),
                              "registry": {"loaded": bool(follower and follower.caught_up.is_set()),
                                           "errors": follower.errors if follower else 0},
                              "deadletters": {
                                  "consuming": bool(dead and dead.ready.is_set()),
                                  "error": dead.error if dead else None,
                                  "sources": len(deadletters.sources)}},
                             200 if ok else 503)

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return json_response(openapi_document())

    def endpoint(name: str):  # noqa: ANN202 - a Starlette endpoint
        async def handler(request: Request) -> Response:
            return await api.handle(request, name)
        return handler

    def page(filename: str):  # noqa: ANN202 - a Starlette endpoint
        async def handler(request: Request) -> Response:
            return FileResponse(static / filename, headers={"cache-control": "no-cache"})
        return handler

    def layout_page(filename: str, layout: str):  # noqa: ANN202 - a Starlette endpoint
        async def handler(request: Request) -> Response:
            html = (static / filename).read_text(encoding="utf-8")
            html = html.replace('data-layout="mobile"', f'data-layout="{layout}"', 1)
            return HTMLResponse(html, headers={"cache-control": "no-cache"})
        return handler

    def root_file(filename: str, media_type: str):  # noqa: ANN202 - a Starlette endpoint
        async def handler(request: Request) -> Response:
            return FileResponse(static / filename, media_type=media_type,
                                headers={"cache-control": "no-cache"})
        return handler

    routes = [
        WebSocketRoute("/ws", ws_endpoint),
        Route("/health", health), Route("/metrics", prometheus), Route("/openapi.json", openapi),
        Route("/api/me", endpoint("me")),
        Route("/api/fleet", endpoint("fleet")),
        Route("/api/communities/{cid}/overview", endpoint("overview")),
        Route("/api/communities/{cid}/devices", endpoint("devices")),
        Route("/api/communities/{cid}/alarms", endpoint("alarms")),
        Route("/api/communities/{cid}/deadletters", endpoint("deadletters")),
        Route("/api/communities/{cid}/reconciliation", endpoint("reconciliation")),
        Route("/api/communities/{cid}/coefficients/comparison",
              endpoint("coefficient_comparison")),
        Route("/api/communities/{cid}/commands", endpoint("commands")),
        Route("/api/communities/{cid}/controls", endpoint("device_controls"), methods=["GET"]),
        Route("/api/communities/{cid}/edges", endpoint("edges")),
        Route("/api/communities/{cid}/controls", endpoint("override"), methods=["POST"]),
        Route("/api/communities/{cid}/alarm-actions", endpoint("alarm_history")),
        Route("/api/communities/{cid}/alarms/{alarm_id}/actions", endpoint("alarm_action"),
              methods=["POST"]),
        Route("/api/communities/{cid}/members/{mid}/history", endpoint("history")),
        Route("/api/communities/{cid}/members/{mid}/export.csv", endpoint("export_csv")),
        *[Route(path, layout_page(*LAYOUTS[filename]) if filename in LAYOUTS else page(filename))
          for path, filename in PAGES.items()],
        *[Route(path, root_file(*spec)) for path, spec in ROOT_FILES.items()],
        Mount("/static", StaticFiles(directory=static), name="static"),
    ]
    # gzip for pages, scripts and JSON (the websocket negotiates permessage-deflate itself)
    app = SecureStarlette(routes=routes, lifespan=lifespan,
                          middleware=[Middleware(GZipMiddleware, minimum_size=500)])
    app.state.auth_limiter = FailureLimiter.from_env() if auth_limiter is None else auth_limiter
    app.state.trusted_proxies = list(trusted_proxies_from_env() if trusted_proxies is None
                                     else trusted_proxies)
    app.state.hub = hub
    app.state.metrics = metrics
    app.state.registry = registry
    app.state.router = router
    app.state.consumers = consumers
    app.state.follower = follower
    app.state.deadletters = deadletters
    return app

