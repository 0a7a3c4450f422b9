"""The edge agent as maintenance sees it: a running config that a pushed one can replace.

Why in-process replacement and not a restart: the process keeps its TLS sessions (heartbeat,
maintenance), its pid for the supervisor and its log buffer, and a config that does not start
is rolled back to the one that ran, so an operator's mistake never leaves the edge without
polling. The order is: validate the pushed document completely (maps loaded, settings checked)
while the old config keeps running; only then stop the old runner (the store is durable, so
nothing queued is lost), start the new one, and write the file so a restart keeps it.

Generic over what runs (the Modbus edge supplies ``validate`` and ``make``), so this module
does not import the connectors.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import yaml

from ioe.edge.files import write_file
from ioe.edge.maintenance import (
    ActionKind,
    Handled,
    Handler,
    MaintenanceAction,
    OutcomeStatus,
    RecentLines,
    config_version,
)

log = logging.getLogger(__name__)

#: what a pushed config may carry; ``edge:`` and ``control:`` (queue, Kafka, metrics, command
#: execution) are set at the edge, so a pushed copy must equal the running one
PUSHABLE = "devices"
PINNED = ("edge", "control")


class Runner(Protocol):
    def start(self) -> None: ...

    def stop(self, final: bool = False) -> None: ...


C = TypeVar("C")
R = TypeVar("R", bound=Runner)


class ConfigRefused(ValueError):
    """A pushed config that is not applied; the message is the reason the operator sees."""


class LiveAgent(Generic[C, R]):
    def __init__(self, path: Path, document: Mapping[str, Any], config: C,
                 validate: Callable[[Mapping[str, Any]], C], make: Callable[[C], R],
                 *, recent: RecentLines | None = None) -> None:
        self.path = path
        self.document: dict[str, Any] = dict(document)
        self.config = config
        self.validate = validate
        self.make = make
        self.recent = recent
        self.runner: R = make(config)
        self.stopping = threading.Event()
        self.restart_requested = False
        self._lock = threading.Lock()

    def version(self) -> str:
        return config_version(self.document.get(PUSHABLE) or [])

    # -- lifecycle -----------------------------------------------------------------------
    def run(self) -> None:
        self.runner.start()
        try:
            while not self.stopping.wait(1.0):
                pass
        finally:
            with self._lock:
                self.runner.stop(final=True)

    def reexec(self) -> None:
        """Replace this process with a fresh copy of itself (same pid and arguments), after
        :meth:`run` has stopped the runner (store flushed and closed)."""
        log.info("maintenance: re-executing %s", " ".join(sys.orig_argv[:3]))
        logging.shutdown()
        os.execv(sys.executable, sys.orig_argv)

    # -- maintenance handlers ------------------------------------------------------------
    def handlers(self) -> dict[ActionKind, Handler]:
        return {ActionKind.PUSH_CONFIG: self.push_config, ActionKind.LOGS: self.logs,
                ActionKind.RESTART: self.restart}

    def checked(self, text: str | None) -> tuple[dict[str, Any], C]:
        """The running document with the pushed devices, and its validated config."""
        try:
            pushed = yaml.safe_load(text or "")
        except yaml.YAMLError as exc:
            raise ConfigRefused(f"not YAML: {exc}") from exc
        if not isinstance(pushed, dict):
            raise ConfigRefused("the config must be a YAML mapping with a 'devices:' list")
        unknown = set(pushed) - {PUSHABLE, *PINNED}
        if unknown:
            raise ConfigRefused(f"unknown sections {sorted(unknown)}")
        for key in PINNED:
            if key in pushed and pushed[key] != self.document.get(key):
                raise ConfigRefused(f"'{key}:' is set at the edge and cannot be pushed; "
                                    "send the same section or leave it out")
        devices = pushed.get(PUSHABLE)
        if not isinstance(devices, list) or not devices:
            raise ConfigRefused("'devices:' must be a non-empty list")
        for device in devices:
            if not isinstance(device, dict):
                raise ConfigRefused("each device must be a mapping")
            for key in ("poll_interval_s", "timeout_s"):
                value = device.get(key)
                if value is not None and (not isinstance(value, int | float) or value <= 0):
                    raise ConfigRefused(f"device {device.get('id')!r}: {key} must be a "
                                        f"positive number, not {value!r}")
        document = {**self.document, PUSHABLE: devices}
        try:
            return document, self.validate(document)
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise ConfigRefused(str(exc)) from exc

    def push_config(self, action: MaintenanceAction) -> Handled:
        try:
            document, config = self.checked(action.config)
        except ConfigRefused as exc:
            return Handled(OutcomeStatus.REFUSED, f"{exc}; the running config is kept")
        if config_version(document[PUSHABLE]) == self.version():
            return Handled(OutcomeStatus.APPLIED, "unchanged")
        with self._lock:
            if self.stopping.is_set():
                return Handled(OutcomeStatus.FAILED, "the agent is stopping")
            old = self.runner
            old.stop()
            try:
                runner = self.make(config)
                runner.start()
            except Exception as exc:  # noqa: BLE001 - roll back to what ran
                log.exception("maintenance: the pushed config did not start; rolling back")
                self.runner = self.make(self.config)
                self.runner.start()
                return Handled(OutcomeStatus.FAILED, f"did not start ({type(exc).__name__}: "
                                                     f"{exc}); the previous config runs again")
            self.runner, self.config, self.document = runner, config, document
        previous = self.path.with_name(self.path.name + ".previous")
        if self.path.exists():
            write_file(previous, self.path.read_bytes())
        write_file(self.path, ("# pushed by " + action.requested_by + "\n" +
                               yaml.safe_dump(document, sort_keys=False)).encode())
        return Handled(OutcomeStatus.APPLIED, f"{len(document[PUSHABLE])} devices; "
                                              f"saved to {self.path.name}")

    def logs(self, action: MaintenanceAction) -> Handled:
        if self.recent is None:
            return Handled(OutcomeStatus.REFUSED, "this agent keeps no log lines")
        lines = self.recent.recent(action.lines)
        return Handled(OutcomeStatus.DONE, f"{len(lines)} lines", lines=lines)

    def restart(self, action: MaintenanceAction) -> Handled:
        def _restart() -> None:
            self.restart_requested = True
            self.stopping.set()

        return Handled(OutcomeStatus.RESTARTING,
                       "flushing the store, then re-executing the agent", after=_restart)
