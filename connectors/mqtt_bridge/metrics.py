"""Prometheus counters of one bridge instance (own CollectorRegistry: tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class BridgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.received = Counter("ioe_mqtt_bridge_received", "MQTT messages received",
                                registry=self.registry)
        self.produced = Counter("ioe_mqtt_bridge_readings_produced",
                                "readings acknowledged by Kafka", registry=self.registry)
        self.dead_lettered = Counter("ioe_mqtt_bridge_dead_lettered",
                                     "records sent to the dead-letter topic, by reason",
                                     ["reason"], registry=self.registry)
        self.suppressed = Counter("ioe_mqtt_bridge_dead_letters_suppressed",
                                  "repeated dead letters of one origin only counted (rate "
                                  "limit; the next sample says how many)", ["reason"],
                                  registry=self.registry)
        self.ignored = Counter("ioe_mqtt_bridge_ignored",
                               "messages without a reading on purpose (availability, retained…)",
                               ["reason"], registry=self.registry)
        self.acked = Counter("ioe_mqtt_bridge_acked", "MQTT messages acknowledged after Kafka",
                             registry=self.registry)
        self.kafka_retries = Counter("ioe_mqtt_bridge_kafka_retries",
                                     "Kafka sends retried by the bridge", registry=self.registry)
        self.pending = Gauge("ioe_mqtt_bridge_pending", "messages waiting for Kafka",
                             registry=self.registry)
        self.connected = Gauge("ioe_mqtt_bridge_connected", "1 while connected to MQTT",
                               registry=self.registry)

    def serve(self, port: int, addr: str = "127.0.0.1") -> object:
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server

    def value(self, name: str, **labels: str) -> float:
        """Current value of a counter (``…_total``) or gauge, 0 when never set."""
        sample = self.registry.get_sample_value(name, labels or None)
        return float(sample or 0.0)
