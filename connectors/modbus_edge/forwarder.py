"""Forwarding the outbox to Kafka: oldest first, deleted only once acknowledged.

Order is what makes a replay safe: all rows of one chunk that go to one partition are put in a
single record batch (long linger, large batch, explicit flush), which Kafka accepts or refuses
as a whole. A refused batch stays in the outbox and is sent again before anything newer, so a
partition never sees a later reading before an earlier one that was lost. After any failure
the producer is discarded, so no stale retry can arrive after the resend.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from connectors.modbus_edge.store import Outbox
from ioe.kafka import make_producer
from ioe.settings import Settings

log = logging.getLogger(__name__)

#: producer options of the edge: short timeouts (the uplink is flaky) and whole-chunk batches
EDGE_PRODUCER = {
    "linger_ms": 10_000,
    "batch_size": 4 * 1024 * 1024,
    "request_timeout_ms": 5_000,
    "delivery_timeout_ms": 20_000,
    "max_block_ms": 5_000,
    "reconnect_backoff_max_ms": 2_000,
    "metadata_max_age_ms": 30_000,
}


class Forwarder:
    def __init__(self, outbox: Outbox, settings: Settings, *, chunk: int = 500,
                 flush_timeout_s: float = 20.0, backoff_max_s: float = 10.0,
                 on_sent: Callable[[int], None] | None = None,
                 on_error: Callable[[str], None] | None = None,
                 producer_factory: Callable[[], Any] | None = None,
                 producer_options: Mapping[str, Any] | None = None) -> None:
        self.outbox = outbox
        self.settings = settings
        self.chunk = chunk
        self.flush_timeout_s = flush_timeout_s
        self.backoff_max_s = backoff_max_s
        self.on_sent = on_sent or (lambda n: None)
        self.on_error = on_error or (lambda kind: None)
        # producer_options: the SASL_SSL credentials of an enrolment bundle (ioe.edge.bundle)
        options = {**EDGE_PRODUCER, **(producer_options or {})}
        self._factory = producer_factory or (
            lambda: make_producer(settings, **options))  # type: ignore[arg-type]
        self._producer: Any = None
        self.wake = threading.Event()
        self.stop_event = threading.Event()
        self.uplink_ok = False

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception:  # noqa: BLE001 - it is being discarded anyway
                log.debug("closing a failed producer", exc_info=True)

    def forward_once(self) -> int:
        """Send one chunk; returns rows acknowledged, raises when some were not."""
        rows = self.outbox.peek(self.chunk)
        if not rows:
            return 0
        if self._producer is None:
            self._producer = self._factory()
        producer = self._producer
        futures = []
        try:
            for row in rows:
                futures.append((row.seq, producer.send(row.topic, key=row.key, value=row.value)))
            producer.flush(timeout=self.flush_timeout_s)
        except Exception as exc:  # noqa: BLE001 - broker down, metadata timeout, …
            self._fail(futures, f"{type(exc).__name__}: {exc}")
            raise
        acked = [seq for seq, f in futures if f.is_done and f.succeeded()]
        if len(acked) < len(rows):
            failed = next((f for _, f in futures if not (f.is_done and f.succeeded())), None)
            self._fail(futures, f"not acknowledged: {getattr(failed, 'exception', None)}")
            raise ConnectionError(f"{len(rows) - len(acked)} of {len(rows)} rows not acknowledged")
        self.outbox.delete(acked)
        self.on_sent(len(acked))
        return len(acked)

    def _fail(self, futures: list[tuple[int, Any]], why: str) -> None:
        # keep what was acknowledged: those partitions already hold it, resending would only
        # duplicate; the rest stays queued for the next attempt, in order
        acked = [seq for seq, f in futures if f.is_done and f.succeeded()]
        self.outbox.delete(acked)
        if acked:
            self.on_sent(len(acked))
        self._drop_producer()
        if self.uplink_ok:
            log.warning("Kafka uplink lost (%s); buffering %d readings", why, len(self.outbox))
        self.uplink_ok = False
        self.on_error("send")

    def run(self) -> None:
        """Forward until stopped; back off exponentially while the uplink is down."""
        backoff = 0.5
        while not self.stop_event.is_set():
            try:
                sent = self.forward_once()
            except Exception as exc:  # noqa: BLE001 - never crash the edge on a network error
                log.debug("forward failed: %s", exc)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            if sent:
                if not self.uplink_ok:
                    log.info("Kafka uplink up; %d readings still queued", len(self.outbox))
                self.uplink_ok = True
                backoff = 0.5
                continue
            self.wake.wait(0.5)
            self.wake.clear()

    def drain(self, timeout_s: float) -> bool:
        """Try to empty the outbox before a clean shutdown (it survives anyway)."""
        deadline = time.monotonic() + timeout_s
        while len(self.outbox) and time.monotonic() < deadline:
            try:
                self.forward_once()
            except Exception:  # noqa: BLE001
                return False
        return not len(self.outbox)

    def close(self) -> None:
        self.stop_event.set()
        self.wake.set()
        if self._producer is not None:
            try:
                self._producer.close(timeout=5)
            except Exception:  # noqa: BLE001
                pass
            self._producer = None
