"""The rules in the worker (``ioe worker --rules FILE``): active control on the live state the
worker has just computed.

Why here and not in a process of its own: the worker already holds each community's live
state, and it owns whole communities (``ioe.readings`` is keyed by community), so the worker
that computes a community's live values is the one and only host that evaluates its rules — no
extra hop through ``ioe.live``, no second copy of the state, and scaling the workers scales the
rules with them. The loop itself is :class:`control.run.ControlLoop` (the same one
``ioe control run`` drives from ``ioe.live``); this module only wires it to the worker:

- every live update the worker computes (also the ones not published because nothing changed:
  a rule must see a steady value as *fresh*, or it would stop renewing a limit it holds) is
  queued (:data:`streams.context.LiveHook`) and folded into the loop by the rules' thread, so
  the loop's state is only ever touched by one thread;
- once a second, off the event loop (sending a command waits for the broker, storing it waits
  for ClickHouse), the rule files are reloaded if they changed and the rules are evaluated;
- on a rebalance the loop forgets every community's live state: a community that moved to
  another worker is not acted on here again, and one that stayed is re-filled by the full live
  republish that follows every rebalance. The rules' memory (what a rule holds, since when) is
  kept in the process; a community arriving from another worker starts with an empty memory,
  which is safe because every limit a rule holds expires on the device by itself
  (``revert_s``) unless renewed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from prometheus_client import Counter

from ioe.messages import LiveMessage
from streams.context import WorkerContext

log = logging.getLogger(__name__)

PENDING_MAX = 50_000


class WorkerRules:
    """The worker's :class:`control.run.ControlLoop`, fed by the live path.

    The loop is made on the first tick after the registry is known (its rule files are
    checked against the registry, and it opens a Kafka producer: not on the event loop); live
    updates before that are not kept — the next one follows within a second."""

    def __init__(self, ctx: WorkerContext, store: Callable[[], Any] | None = None) -> None:
        self.ctx = ctx
        self.store = store
        self.loop: Any = None  # control.run.ControlLoop once made
        #: live updates (None: a rebalance) from the event loop, in order, for the rules'
        #: thread; a deque because its append and popleft are thread-safe. Bounded: if the
        #: rules' thread is stuck (ClickHouse hanging), the oldest updates go first — they
        #: would be too old to act on anyway (``max_age_s``)
        self.pending: deque[LiveMessage | None] = deque(maxlen=PENDING_MAX)
        self.commands = Counter("ioe_worker_rule_commands", "commands decided by the rules",
                                ["status"], registry=ctx.metrics)
        self.errors = Counter("ioe_worker_rule_errors", "rule evaluations that raised",
                              registry=ctx.metrics)

    def on_live(self, community_id: str, messages: Sequence[LiveMessage]) -> None:
        if self.loop is not None:
            self.pending.extend(messages)

    def on_rebalance(self) -> None:
        self.pending.append(None)

    def _fold_pending(self) -> None:
        while self.pending:
            message = self.pending.popleft()
            if message is None:
                self.loop.forget_live()
            else:
                self.loop.apply_message(message)

    def _step(self) -> None:
        if self.loop is None:
            from control.run import ControlLoop  # Kafka and ClickHouse clients: only when used

            store = self.store() if self.store is not None else None
            self.loop = ControlLoop(self.ctx.settings, self.ctx.registry,
                                    list(self.ctx.config.rule_files), store=store)
            return
        self._fold_pending()
        self.loop.reload()
        for issued in self.loop.step():
            self.commands.labels(issued.status).inc()

    async def tick(self) -> None:
        if not self.ctx.follower.ready.is_set():
            return
        try:
            await asyncio.to_thread(self._step)
        except Exception:  # a broken rule or an unreachable broker must not stop the worker
            self.errors.inc()
            log.exception("rules not evaluated")

    def close(self) -> None:
        if self.loop is not None:
            self.loop.close()


def setup(ctx: WorkerContext, interval_s: float = 1.0) -> WorkerRules | None:
    """Wire the rules into the worker when rule files were given; None otherwise."""
    if not ctx.config.rule_files:
        return None
    store: Callable[[], Any] | None = None
    if ctx.config.sink:  # the worker writes ClickHouse anyway: its rules' commands go there too
        from control.store import CommandLog

        store = partial(CommandLog, ctx.settings)  # made in the rules' thread, used only there
    rules = WorkerRules(ctx, store)
    ctx.live_hooks.append(rules.on_live)
    ctx.rebalance_hooks.append(rules.on_rebalance)
    ctx.app.timer(interval=interval_s)(rules.tick)
    log.info("rules: %s", ", ".join(str(p) for p in ctx.config.rule_files))
    return rules
