"""Prometheus metrics of one web instance (its own CollectorRegistry: several apps share a
test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class WebMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.clients = Gauge("ioe_web_ws_clients", "connected websocket clients", registry=r)
        self.frames_sent = Counter("ioe_web_ws_frames_sent", "frames sent to clients",
                                   registry=r)
        self.frames_conflated = Counter(
            "ioe_web_ws_frames_conflated", "updates replaced by a newer one before being sent",
            registry=r)
        self.disconnects = Counter("ioe_web_ws_disconnects", "server-side disconnects",
                                   ["reason"], registry=r)
        self.refusals = Counter("ioe_web_refusals", "requests refused by auth or scope",
                                ["route", "code"], registry=r)
        self.live_messages = Counter("ioe_web_live_messages", "ioe.live messages routed",
                                     registry=r)
        self.live_bad = Counter("ioe_web_live_bad_messages", "ioe.live messages not routable",
                                ["reason"], registry=r)
        self.registry_updates = Counter("ioe_web_registry_updates",
                                        "communities updated from ioe.registry", registry=r)
        self.http_requests = Counter("ioe_web_http_requests", "REST requests",
                                     ["route", "status"], registry=r)
        self.auth_failures = Counter(
            "ioe_web_auth_failures", "failed token checks (HTTP 401, websocket close 4401)",
            ["route"], registry=r)
        self.auth_rate_limited = Counter(
            "ioe_web_auth_rate_limited",
            "requests refused (429 / websocket 1008) after too many failed authentications",
            ["route"], registry=r)
