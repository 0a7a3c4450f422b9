"""A second, private Kafka broker for tests that must restart Kafka.

The shared broker on 9092 serves every developer: never restart it. This one uses the same jars
and the same server properties as ``ioe stack`` (``ioe.stack._kafka_properties``) on free ports
and a temporary log directory, and is killed by its fixture.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from ioe import stack
from ioe.settings import Settings


def _free_port_pair() -> int:
    """A port P such that P (client) and P+1 (controller) are both free."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


class PrivateKafka:
    def __init__(self, base_settings: Settings, workdir: Path) -> None:
        port = _free_port_pair()
        self.settings = dataclasses.replace(base_settings, kafka_bootstrap=f"127.0.0.1:{port}",
                                            partitions=3)
        self.workdir = workdir
        self.data = workdir / "data"
        self.props = workdir / "server.properties"
        self.log = workdir / "kafka.log"
        self.proc: subprocess.Popen[bytes] | None = None
        libs = stack.kafka_libs(base_settings.local_dir)
        log4j = workdir / "log4j2.properties"
        workdir.mkdir(parents=True, exist_ok=True)
        log4j.write_text(
            "status = warn\nappender.console.type = Console\nappender.console.name = STDOUT\n"
            "appender.console.layout.type = PatternLayout\n"
            "appender.console.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = WARN\nrootLogger.appenderRefs = stdout\n"
            "rootLogger.appenderRef.stdout.ref = STDOUT\n")
        self.java = ["java", "-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
                     f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*"]
        self.props.write_text(stack._kafka_properties(self.settings, self.data))
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run([*self.java, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                        "-c", str(self.props)], check=True, stdout=subprocess.DEVNULL)

    def start(self, timeout_s: float = 120.0) -> None:
        log = open(self.log, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen([*self.java, "kafka.Kafka", str(self.props)], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while not stack.kafka_healthy(self.settings):
            if self.proc.poll() is not None:
                raise RuntimeError(f"private Kafka exited; see {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"private Kafka not healthy; see {self.log}")
            time.sleep(0.5)

    def stop(self, timeout_s: float = 30.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()
