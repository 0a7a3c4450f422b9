"""Prometheus counters of one connector instance (own registry: tests run several at once)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class DatadisMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("ioe_datadis_requests", "HTTP calls to Datadis",
                                ["endpoint", "outcome"], registry=r)
        self.distributor_errors = Counter(
            "ioe_datadis_distributor_errors",
            "distributorError entries of answers used anyway (get-supplies)",
            ["endpoint", "distributor"], registry=r)
        self.logins = Counter("ioe_datadis_logins", "logins (token requests)", registry=r)
        self.cache_hits = Counter("ioe_datadis_cache_hits",
                                  "queries answered from the 24 h ledger", registry=r)
        self.deferred = Counter("ioe_datadis_deferred",
                                "queries not sent because they failed less than 24 h ago",
                                registry=r)
        self.readings = Counter("ioe_datadis_readings", "readings published or printed",
                                registry=r)
        self.dead_letters = Counter("ioe_datadis_dead_letters", "dead letters by reason",
                                    ["reason"], registry=r)
        self.months = Counter("ioe_datadis_months", "month queries by outcome",
                              ["outcome"], registry=r)

    def value(self, name: str, **labels: str) -> float:
        """Current value of a counter (tests and the end-of-run summary)."""
        got = self.registry.get_sample_value(f"{name}_total", labels or None)
        return float(got or 0.0)
