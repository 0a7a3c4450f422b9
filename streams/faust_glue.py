"""The Faust glue of the readings path: batches, event context, changelog, offsets, and the
work-arounds for faust-streaming 0.15.3. Everything here is about the runtime, nothing about
energy; the pure parts are :mod:`streams.clock`, :mod:`streams.compute` and :mod:`streams.live`.

Facts this module relies on (checked in faust-streaming 0.15.3's source, ``faust/streams.py``
and ``faust/tables/base.py``):

* ``Stream.take_events(n, within)`` acknowledges the events of a batch only *after* the body
  of the ``async for`` returns (its ``finally`` acks them before taking the next batch), so
  state made durable inside the body is durable before its offsets can be committed.
* A table write goes to the changelog partition of the *current event* (a context variable the
  stream sets to the newest event it received, not to the one being processed). A batch may
  span partitions, so :func:`in_event` sets the current event to an event of the partition
  whose state is being written, and :func:`by_partition` groups a batch accordingly.
* Faust's producer buffer hands messages to aiokafka one at a time (``send_soon`` → a
  background task), and its commit flushes that buffer with a 0.1 s timeout and then commits
  anyway. :func:`drain_changelog` waits until the buffer is empty — once per batch, which is
  what made the per-event wait of the release before so expensive.
* Faust's fetch loop (``Consumer._drain_messages``) hands each message to the conductor with
  ``wait_first(callback(message), suspend_flow.wait())``: four tasks, an ``asyncio.wait`` and
  three cancellations per reading, whatever the callback does. :class:`InlineDrainConsumer`
  runs the callback inline and races it against the flow suspension only when it suspends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
import weakref
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.streams import _current_event
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaFaustConsumer

from ioe.kafka import make_async_consumer
from ioe.settings import Settings

log = logging.getLogger(__name__)

TP = tuple[str, int]
#: one record to process: (key, value)
Record = tuple[bytes | None, bytes | None]

_DELETED = object()


def by_partition(events: Sequence[Any]) -> dict[TP, list[Any]]:
    """The events of a batch per (topic, partition), each list in offset order."""
    groups: dict[TP, list[Any]] = {}
    for event in events:
        message = event.message
        groups.setdefault((message.topic, message.partition), []).append(event)
    return groups


@contextlib.contextmanager
def in_event(event: Any) -> Iterator[None]:
    """Make ``event`` Faust's current event: table writes go to its changelog partition."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


async def drain_changelog(app: faust.App) -> None:
    """Hand the batch's table writes to the Kafka client before the batch is acked.

    Faust's commit flushes its producer buffer with a 0.1 s timeout and then commits the acked
    offsets even if changelog messages are still buffered (measured: a SIGKILL then lost slot
    updates whose readings were already committed). Once the buffer is empty the messages sit
    in aiokafka's accumulator, whose flush (also done before the commit) does wait for
    delivery, so state and offsets can no longer diverge.
    """
    buffer: Any = app.producer.buffer
    while buffer.size:
        # message_sent is set after the message taken from the queue reached aiokafka, so
        # leaving this loop means the last one is there too, not merely dequeued
        buffer.message_sent.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(buffer.message_sent.wait(), timeout=1.0)
    await asyncio.sleep(0)


async def _resume(coro: Any, waiting_on: Any) -> Any:
    """Run to its end a coroutine that was started by hand and suspended on ``waiting_on``
    (what its first ``send`` yielded: an asyncio future, or None for a bare ``sleep(0)``).

    The coroutine reads the outcome of the future itself when resumed (``Future.__await__``
    returns or raises its result), so it is resumed with ``send`` whatever the future did; only
    a cancellation of *this* task while the future was not cancelled is thrown in."""
    while True:
        thrown: BaseException | None = None
        if waiting_on is None:
            await asyncio.sleep(0)
        else:
            # as a Task does with what a coroutine yields: the flag says "a task waits on me";
            # left set, awaiting the future again fails ("await wasn't used with future")
            waiting_on._asyncio_future_blocking = False
            try:
                await waiting_on
            except asyncio.CancelledError as exc:
                if not waiting_on.cancelled():
                    thrown = exc
            except BaseException:  # noqa: S110 - the coroutine reads it from the future
                pass
        try:
            waiting_on = coro.throw(thrown) if thrown is not None else coro.send(None)
        except StopIteration as stop:
            return stop.value


class InlineDrainConsumer(AIOKafkaFaustConsumer):
    """Faust's aiokafka consumer with a fetch loop that hands messages to the streams inline.

    The stock loop awaits ``wait_first(callback(message), suspend_flow.wait())`` per message so
    that a rebalance (which sets ``suspend_flow``) interrupts a delivery blocked on a full
    stream buffer. That made four tasks, an ``asyncio.wait`` and three cancellations per
    reading: measured with py-spy on ``bench/bench_worker.py``, about a sixth of the worker's
    main thread. Here the callback is started inline; in the common case (flow active, room in
    the stream's buffer, producer buffer not full) it finishes without suspending and costs one
    call. Only when it suspends is the rest run as a task and raced against the suspension,
    as before. The loop's bookkeeping (read offsets, gaps, ``commit_every``) is Faust's.
    """

    def on_buffer_full(self, tp: Any) -> None:
        """Back-pressure by waiting, not by pausing the partition.

        Faust's reaction to a stream buffer under pressure is to drop the partition from the
        fetch set; with no partition left to fetch its fetch loop then sleeps a whole second
        (``Consumer._wait_next_records``) before looking again. With one busy partition (one
        big community) that was a second of idling at every fill, about a quarter of the
        worker's wall time on ``bench/bench_worker.py``. Here nothing is paused: the delivery
        of the next message waits for room in the buffer (:meth:`_deliver`), so the fetch loop
        stops pulling exactly as long as the stream is behind, and resumes at once."""

    async def _deliver(self, message: Any) -> None:
        if self.suspend_flow.is_set():
            await self.wait_first(self.callback(message), self.suspend_flow.wait())
            return
        coro: Any = self.callback(message)
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return
        task = asyncio.ensure_future(_resume(coro, waiting_on))
        await self.wait_first(task, self.suspend_flow.wait())

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runtime loop
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                batch = self.getmany(timeout=1.0)
                await self.sleep(0)  # getmany may return at once, again and again
                if not self.should_stop:
                    async for tp, message in batch:
                        since_yield += 1
                        if since_yield > 100:  # let timers and health checks run
                            await asyncio.sleep(0)
                            since_yield = 0
                        offset = message.offset
                        last = read_offset[tp]
                        if last is not None and offset < last:
                            continue  # older than what was read: Faust drops these too
                        if last and offset - last > 1 and acks_enabled_for(message.topic):
                            await self._add_gap(tp, last + 1, offset)
                        if self._commit_every is not None and self._n_acked >= self._commit_every:
                            self._n_acked = 0
                            await self.commit()
                        await self._deliver(message)
                        read_offset[tp] = offset
                    self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("broker stopped the consumer, shutting down")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class WriteBack(MutableMapping[str, Any]):
    """A table seen through a per-batch write-back cache: a key written many times in a batch
    (the slot of a device reporting every second, a community's watermark) reaches the table,
    and so its changelog, once, at :meth:`flush` — inside the right event context."""

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table
        self._dirty: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        value = self._dirty.get(key, self)
        if value is self:
            return self.table[key]
        if value is _DELETED:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self._dirty.get(key, self)
        if value is self:
            return self.table.get(key, default)
        return default if value is _DELETED else value

    def __contains__(self, key: object) -> bool:
        value = self._dirty.get(key, self)  # type: ignore[call-overload]
        if value is self:
            return key in self.table
        return value is not _DELETED

    def __setitem__(self, key: str, value: Any) -> None:
        self._dirty[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._dirty[key] = _DELETED

    def keys(self) -> Any:  # type: ignore[override]
        keys = set(self.table.keys())
        for key, value in self._dirty.items():
            if value is _DELETED:
                keys.discard(key)
            else:
                keys.add(key)
        return keys

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def flush(self) -> int:
        """Write the dirty keys to the table (call inside the partition's event context)."""
        count = len(self._dirty)
        for key, value in self._dirty.items():
            if value is _DELETED:
                if key in self.table:
                    del self.table[key]
            else:
                self.table[key] = value
        self._dirty.clear()
        return count


class Offsets:
    """The committed offsets and the skipped-range work-around of the readings stream."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.next_offset: dict[TP, int] = {}
        #: records delivered again below the next offset (skipped, counted)
        self.redelivered = 0
        self._consumer: AIOKafkaConsumer | None = None

    def clear(self) -> None:
        self.next_offset.clear()

    async def committed(self, tp: TP) -> int | None:
        """The group's committed offset (where a freshly assigned partition must resume)."""
        try:
            if self._consumer is None:
                self._consumer = make_async_consumer(self.settings, group_id=self.app.conf.id)
                await asyncio.wait_for(self._consumer.start(), timeout=10)
            return await asyncio.wait_for(self._consumer.committed(TopicPartition(*tp)),
                                          timeout=10)
        except Exception as exc:  # only a safety net: never block processing on it
            log.warning("could not read the committed offset of %s: %s", tp, exc)
            return None

    async def bounds(self, tp: TopicPartition) -> tuple[int, int] | None:
        if self._consumer is None:
            return None
        first = (await asyncio.wait_for(self._consumer.beginning_offsets([tp]), 10))[tp]
        end = (await asyncio.wait_for(self._consumer.end_offsets([tp]), 10))[tp]
        return first, end

    async def records(self, tp: TP, events: Sequence[Any]) -> tuple[list[Record], int]:
        """The records of one partition's events, with any range the stream skipped before
        them read back and put in its place; and how many were skipped.

        Measured with faust-streaming 0.15.3: after a rebalance that hands a partition back to
        a worker that owned it before, the stream resumed at the committed offset, delivered a
        few records, then jumped ahead to the position of its old fetch, and the skipped
        readings were committed without ever being processed. Offsets of ``ioe.readings`` are
        contiguous (no transactional producers), so a jump is detectable; the missing range is
        read with a side consumer and processed in the batch, in this partition's context.
        """
        out: list[Record] = []
        skipped = 0
        for event in events:
            offset = event.message.offset
            expected = self.next_offset.get(tp)
            if expected is None:
                expected = await self.committed(tp)
            if expected is not None and offset < expected:
                # processed already in this process: the re-seek after a recovery
                # (:func:`release_stream`) delivers again what it cannot tell apart
                self.redelivered += 1
                continue
            if expected is not None and offset > expected:
                log.warning("stream skipped %s[%d] offsets %d..%d: processing them now",
                            tp[0], tp[1], expected, offset - 1)
                missing = await self._read(tp, expected, offset)
                skipped += len(missing)
                out += missing
            self.next_offset[tp] = offset + 1
            out.append((event.key, event.value))
        return out, skipped

    async def _read(self, tp: TP, start: int, stop: int) -> list[Record]:
        consumer = make_async_consumer(self.settings)
        await consumer.start()
        out: list[Record] = []
        try:
            part = TopicPartition(*tp)
            consumer.assign([part])
            consumer.seek(part, start)
            position = start
            while position < stop:
                batch = await consumer.getmany(part, timeout_ms=1000)
                for record in batch.get(part, []):
                    if record.offset >= stop:
                        break
                    out.append((record.key, record.value))
                position = await consumer.position(part)
        finally:
            await consumer.stop()
        return out


async def _in_consumer_thread(app: faust.App, action: str, tps: Sequence[TP]) -> bool:
    """``pause``/``resume`` the aiokafka consumer itself (not only Faust's bookkeeping), on the
    consumer's own thread, where aiokafka's state may be touched."""
    thread: Any = getattr(app.consumer, "_thread", None)
    kafka = getattr(thread, "_consumer", None)
    if thread is None or kafka is None:
        log.warning("no aiokafka consumer to %s %s", action, tps)
        return False
    parts = [TopicPartition(topic, partition) for topic, partition in tps]

    async def act() -> None:
        assigned = kafka.assignment()
        getattr(kafka, action)(*[tp for tp in parts if tp in assigned])

    try:
        await thread.call_thread(act)
    except Exception as exc:  # a rebalance in between: the next assignment holds again
        log.warning("could not %s %s: %s", action, tps, exc)
        return False
    return True


async def hold_then_release(app: faust.App, generation: int, tps: Sequence[TP]) -> bool:
    """Stop aiokafka fetching the stream partitions just assigned, and release them once
    Faust is ready (:func:`release_stream`)."""
    await _in_consumer_thread(app, "pause", tps)
    return await release_stream(app, generation, tps)


async def release_stream(app: faust.App, generation: int, tps: Sequence[TP],
                         timeout_s: float = 300.0) -> bool:
    """Once Faust is ready, seek the stream partitions to their committed offsets and let
    aiokafka fetch them again.

    The root cause of the restart stall and of the skipped ranges (measured with
    faust-streaming 0.15.3 and aiokafka 0.14, diagnostics in the issue note): Faust pauses
    partitions only in its own bookkeeping, so during a rebalance aiokafka's fetcher keeps
    fetching *every* assigned partition and hands Faust readings while it is still recovering
    its tables. Faust drops those it cannot deliver yet (not active, or before its
    ``flow_control`` resumes) without acknowledging them, but the fetch position has moved past
    them. Its own seek to the committed offsets comes *before* it resumes the flow, so a fetch
    answered in between is lost to the generation: the readings wait, uncommitted, until the
    next rebalance (the "joins, recovers, receives nothing" stall), or the stream resumes after
    them (a skipped range). So the stream partitions are paused in aiokafka itself when they
    are assigned (:func:`hold_then_release`) and released here: nothing is fetched for them while
    Faust cannot deliver, and the seek puts back whatever was fetched before the hold. What was
    processed already comes again and is skipped by :meth:`Offsets.records`.

    Returns False when another rebalance came first (it holds and releases again)."""
    consumer: Any = app.consumer
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if app.consumer_generation_id != generation:
            return False
        # ``rebalancing`` turns False in the step that resumes the flow ("Worker ready");
        # the recovery's ``completed`` event is no use here: Faust never clears it
        if not app.rebalancing and app.flow_control.is_active() and consumer.flow_active:
            await consumer.perform_seek()
            released = await _in_consumer_thread(app, "resume", tps)
            log.info("stream partitions %s sought to their committed offsets and released "
                     "(generation %s)", sorted(p for _t, p in tps), generation)
            return released
        await asyncio.sleep(0.01)
    log.warning("not ready %.0f s after the assignment of generation %s: releasing the "
                "stream partitions anyway", timeout_s, generation)
    return await _in_consumer_thread(app, "resume", tps)


class StallWatchdog:
    """Restart the process when readings wait and none has been processed for a while.

    Measured with faust-streaming 0.15.3 (and reported upstream as consumers that stop
    receiving): after a restart the worker sometimes joins the group, recovers its tables,
    says it is ready, and its agent then receives nothing while the partition has readings.
    Offsets are committed only after processing, so re-executing the process is safe: it
    rejoins the group and resumes from the committed offsets, losing nothing.
    """

    def __init__(self, app: faust.App, topic: str, offsets: Offsets, stall_s: float,
                 ready: asyncio.Event, on_stall: Any) -> None:
        self.app = app
        self.topic = topic
        self.offsets = offsets
        self.stall_s = stall_s
        self.ready = ready
        self.on_stall = on_stall
        self.progress_at = time.monotonic()
        self._positions: dict[TP, int] = {}
        #: partition -> (next offset to process, first offset, end offset) at the last check
        self._bounds: dict[int, tuple[int | None, int, int]] = {}

    def progress(self) -> None:
        self.progress_at = time.monotonic()

    async def check(self) -> None:
        if time.monotonic() - self.progress_at < self.stall_s:
            return
        if not self.ready.is_set():
            return
        try:
            assigned = [TopicPartition(tp.topic, tp.partition)
                        for tp in self.app.consumer.assignment() if tp.topic == self.topic]
            waiting = 0
            positions: dict[TP, int] = {}
            for tp in assigned:
                done = self.offsets.next_offset.get((tp.topic, tp.partition))
                if done is None:
                    done = await self.offsets.committed((tp.topic, tp.partition))
                bounds = await self.offsets.bounds(tp)
                if bounds is None:
                    return
                first, end = bounds
                self._bounds[tp.partition] = (done, first, end)
                positions[(tp.topic, tp.partition)] = max(done or 0, first)
                waiting += max(0, end - positions[(tp.topic, tp.partition)])
        except Exception as exc:  # the watchdog must never become the problem
            log.warning("stall check failed: %s", exc)
            return
        suspected, self._positions = self._positions, positions
        if waiting == 0:
            self.progress()
            return
        if suspected != positions:
            return  # readings just arrived after an idle spell: judge at the next check
        self.on_stall()
        log.error("stall diagnostics: %s; waiting (next, first, end): %s",
                  stall_diagnostics(self.app, self.topic), self._bounds)
        log.error("no reading processed for %.0f s while %d wait on %d partition(s): the "
                  "consumer is stalled; restarting this worker process", self.stall_s,
                  waiting, len(assigned))
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def stall_diagnostics(app: faust.App, topic: str) -> dict[str, Any]:
    """Where a reading waiting on ``topic`` is held: Faust's flow and partition sets, and
    aiokafka's fetcher state of each assigned partition of the topic."""
    out: dict[str, Any] = {}
    consumer: Any = app.consumer
    try:
        out["faust"] = {
            "flow_active": consumer.flow_active,
            "paused": sorted(tp.partition for tp in consumer._paused_partitions
                             if tp.topic == topic),
            "active": sorted(tp.partition for tp in consumer._active_partitions or ()
                             if tp.topic == topic),
            "buffered": sorted(tp.partition for tp in consumer._buffered_partitions
                               if tp.topic == topic),
            "fetcher_service": str(getattr(app, "_fetcher", None) and app._fetcher.state),
            "flow_control_suspended": getattr(app.flow_control, "is_active", lambda: "?")(),
        }
        conductor: Any = app.topics
        out["conductor"] = {
            "channels_per_partition": {tp.partition: len(chans)
                                       for tp, chans in conductor._tp_index.items()
                                       if tp.topic == topic},
            "queued": {tp.partition: [chan.queue.qsize() for chan in chans]
                       for tp, chans in conductor._tp_index.items() if tp.topic == topic},
        }
        actors = []
        for agent in app.agents.values():
            for actor in getattr(agent, "_actors", ()):
                task = actor.actor_task
                actors.append({"agent": agent.name[-30:],
                               "done": task is None or task.done(),
                               "awaiting": _actor_stack(actor)})
        out["actors"] = actors
        kafka = consumer._thread._consumer
        fetcher = kafka._fetcher
        assignment = kafka._subscription.subscription.assignment
        parts = {}
        for tp in sorted(assignment.tps):
            if tp.topic != topic:
                continue
            state = assignment.state_value(tp)
            held = fetcher._records.get(tp)
            parts[tp.partition] = {
                "position": state.position if state.has_valid_position else None,
                "awaiting_reset": state.awaiting_reset, "paused": state.paused,
                "highwater": state.highwater, "lso": state.lso,
                "last_fetch_age_s": (round(time.time() - state.timestamp / 1000, 1)
                                     if state.timestamp else None),
                "held": None if held is None else repr(held)[:120],
            }
        out["aiokafka"] = {
            "partitions": parts, "in_flight": sorted(fetcher._in_flight),
            "pending_tasks": len(fetcher._pending_tasks),
            "fetch_task_done": fetcher._fetch_task.done(),
            "records_held": sorted(f"{tp.topic[-30:]}:{tp.partition}" for tp in fetcher._records),
            "waiters": len(fetcher._fetch_waiters),
            "reassignment": kafka._subscription.reassignment_in_progress,
        }
    except Exception as exc:  # diagnostics must never fail the watchdog
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def _actor_stack(actor: Any) -> list[str]:
    """Where a Faust actor's coroutine is suspended (Faust formats the await chain)."""
    try:
        lines = actor.traceback().splitlines()
    except Exception as exc:
        return [f"{type(exc).__name__}: {exc}"]
    return [line.strip() for line in lines if line.strip().startswith("File")][-12:]


def views(tables: Mapping[str, MutableMapping[str, Any]]) -> dict[str, WriteBack]:
    return {name: WriteBack(table) for name, table in tables.items()}
