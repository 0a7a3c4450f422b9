"""The web application: live websocket, REST history API and the static clients.

``create_app(settings, …)`` builds one independent instance (its own hub, metrics, token
verifier and Kafka consumer), so tests and benchmarks can run several in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from dashboards import tokens
from dashboards.api import Api, ApiContext, json_response, openapi_document
from dashboards.hub import Hub, Limits, LiveMessageError, check_message
from dashboards.live import Batch, LiveConsumer
from dashboards.metrics import WebMetrics
from dashboards.store import Store
from dashboards.ws import Connection, WsContext
from ioe.registry import Community, Registry, load_registry
from ioe.settings import Settings, get_settings
from ioe.topics import REGISTRY

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGES = {"/": "index.html", "/member": "member.html", "/tablet": "tablet.html",
         "/control": "control.html"}


class LiveRouter:
    """Turns consumed batches into hub updates and registry changes (on the event loop)."""

    def __init__(self, hub: Hub, registry: Registry, metrics: WebMetrics) -> None:
        self.hub, self.registry, self.metrics = hub, registry, metrics
        self.last_message_at: float | None = None

    def deliver(self, batch: Batch) -> None:
        for topic, key, value in batch:
            if topic == REGISTRY:
                self._registry(key, value)
                continue
            try:
                message = check_message(orjson.loads(value or b"null"))
            except (orjson.JSONDecodeError, LiveMessageError) as exc:
                reason = "not_json" if isinstance(exc, orjson.JSONDecodeError) else "invalid"
                self.metrics.live_bad.labels(reason).inc()
                log.error("unroutable ioe.live message (key %r): %s", key, exc)
                continue
            self.hub.publish(message)
            self.metrics.live_messages.inc()
            self.last_message_at = time.time()

    def _registry(self, key: bytes | None, value: bytes | None) -> None:
        try:
            if value is None:
                if key:
                    self.registry.remove(key.decode())
                return
            community = Community.from_json(value)
        except Exception as exc:  # a bad registry document must not stop the live feed
            log.error("ignoring unusable ioe.registry message (key %r): %s", key, exc)
            return
        self.registry.put(community)
        self.metrics.registry_updates.inc()
        log.info("registry: community %s updated", community.id)


def create_app(settings: Settings | None = None, *, registry: Registry | None = None,
               consume: bool = True, follow_registry: bool = True, limits: Limits | None = None,
               heartbeat_s: float = 15.0, backfill: int = 200,
               static_dir: Path | None = None) -> Starlette:
    settings = settings or get_settings()
    registry = registry if registry is not None else load_registry(settings.registry_path)
    hub = Hub()
    metrics = WebMetrics()
    verifier = tokens.Verifier(settings)
    router = LiveRouter(hub, registry, metrics)
    ws_ctx = WsContext(hub=hub, verifier=verifier, registry=registry, metrics=metrics,
                       limits=limits or Limits(), heartbeat_s=heartbeat_s)
    api = Api(ApiContext(registry=registry, verifier=verifier, store=Store(settings),
                         metrics=metrics))
    static = static_dir or STATIC_DIR
    consumers: list[LiveConsumer] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if consume:
            consumer = LiveConsumer(settings, asyncio.get_running_loop(), router.deliver,
                                    backfill=backfill, follow_registry=follow_registry)
            consumer.start()
            consumers.append(consumer)
        try:
            yield
        finally:
            for consumer in consumers:
                await asyncio.to_thread(consumer.stop)

    async def ws_endpoint(websocket: WebSocket) -> None:
        await Connection(websocket, ws_ctx).run()

    async def health(request: Request) -> Response:
        consumer = consumers[0] if consumers else None
        live = {"consuming": bool(consumer and consumer.ready.is_set()),
                "error": consumer.error if consumer else None,
                "last_message_age_s": None if router.last_message_at is None
                else round(time.time() - router.last_message_at, 1)}
        ok = consumer is None or consumer.error is None
        return json_response({"status": "ok" if ok else "degraded", "live": live,
                              "clients": len(hub.sessions),
                              "communities": sorted(registry.communities)},
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

    routes = [
        WebSocketRoute("/ws", ws_endpoint),
        Route("/health", health), Route("/metrics", prometheus), Route("/openapi.json", openapi),
        Route("/api/me", endpoint("me")),
        Route("/api/communities/{cid}/overview", endpoint("overview")),
        Route("/api/communities/{cid}/devices", endpoint("devices")),
        Route("/api/communities/{cid}/alarms", endpoint("alarms")),
        Route("/api/communities/{cid}/members/{mid}/history", endpoint("history")),
        Route("/api/communities/{cid}/members/{mid}/export.csv", endpoint("export_csv")),
        *[Route(path, page(filename)) for path, filename in PAGES.items()],
        Mount("/static", StaticFiles(directory=static), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.hub = hub
    app.state.metrics = metrics
    app.state.registry = registry
    app.state.router = router
    app.state.consumers = consumers
    return app

