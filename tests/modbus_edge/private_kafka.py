"""A private Kafka broker for outage tests: same jars as the local stack, own ports and data.

The shared broker on 9092 is used by everyone; an outage test stops and restarts this one only.
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


def free_port_pair() -> int:
    """A port p with p+1 also free (the broker's controller listens on p+1)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 65000 and not stack.port_open("127.0.0.1", port + 1, 0.1):
            try:
                with socket.socket() as s2:
                    s2.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair")


class PrivateKafka:
    def __init__(self, base: Settings, workdir: Path) -> None:
        self.port = free_port_pair()
        self.settings = dataclasses.replace(base, kafka_bootstrap=f"127.0.0.1:{self.port}")
        self.workdir = workdir
        self.data = workdir / "data"
        self.props = workdir / "server.properties"
        self.log = workdir / "kafka.log"
        libs = base.local_dir / "kafka" / "libs"
        if not libs.is_dir():
            raise RuntimeError(f"Kafka jars not found in {libs} (run `ioe stack up` once)")
        workdir.mkdir(parents=True, exist_ok=True)
        log4j = workdir / "log4j2.properties"
        log4j.write_text("status = warn\nappender.console.type = Console\n"
                         "appender.console.name = STDOUT\nappender.console.layout.type = "
                         "PatternLayout\nappender.console.layout.pattern = [%d] %p %m (%c)%n\n"
                         "rootLogger.level = WARN\nrootLogger.appenderRef.stdout.ref = STDOUT\n")
        self.props.write_text(stack._kafka_properties(self.settings, self.data))
        self.java = ["java", "-Xms128m", "-Xmx384m", "-XX:+UseSerialGC",
                     "-XX:TieredStopAtLevel=1", f"-Dlog4j2.configurationFile={log4j}",
                     "-cp", f"{libs}/*"]
        cluster_id = "-"
        while cluster_id.startswith("-"):  # argparse would read "-…" as an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run([*self.java, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                        "-c", str(self.props)], check=True, stdout=subprocess.DEVNULL)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([*self.java, "kafka.Kafka", str(self.props)],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not stack.kafka_healthy(self.settings):
            if self.proc.poll() is not None:
                raise RuntimeError(f"private Kafka exited; see {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"private Kafka not up after {timeout_s}s; see {self.log}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Graceful stop (SIGTERM to its process group), SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
