"""Where a benchmarked process spends its time: py-spy's samples, summarised as top lines.

``IOE_BENCH_PROFILE=1 python -m bench --only worker`` records the worker process with py-spy
during the measured phase and prints the functions holding most samples (own time, and the
project's functions inclusive), so the next person sees where the time goes without opening
a flame graph. py-spy comes with the dev dependencies; without it (or without the right to
attach to a process) the benchmark runs unprofiled and says so.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wanted() -> bool:
    return os.environ.get("IOE_BENCH_PROFILE", "") not in ("", "0")


class Profile:
    """``py-spy record`` attached to ``pid`` for at most ``seconds``, in raw (folded) form."""

    def __init__(self, pid: int, seconds: int = 20, rate_hz: int = 100) -> None:
        self.path = Path(tempfile.mkstemp(prefix="ioe-profile-", suffix=".txt")[1])
        exe = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
        self.proc: subprocess.Popen[bytes] | None = None
        if Path(exe).exists():
            self.proc = subprocess.Popen(
                [exe, "record", "-p", str(pid), "-d", str(seconds), "-r", str(rate_hz),
                 "-f", "raw", "-o", str(self.path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> list[str]:
        """Stop recording (py-spy writes what it has on SIGINT) and summarise."""
        if self.proc is None:
            return ["(py-spy not installed: no profile)"]
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        try:
            return top_lines(self.path.read_text())
        finally:
            self.path.unlink(missing_ok=True)


def top_lines(folded: str, most: int = 12) -> list[str]:
    """The functions with most samples: own time, then this project's code inclusive."""
    own: collections.Counter[str] = collections.Counter()
    project: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            if "cli.py" in frame or "/command.py" in frame:
                continue  # entry points: in every sample, they say nothing
            if any(room in frame for room in ("streams/", "connectors/", "ioe/", "dashboards/",
                                              "control/")):
                project[frame] += count
    if not total:
        return ["(no samples: py-spy could not attach — ptrace permission?)"]
    out = [f"profile: {total} samples; own time:"]
    out += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(most)]
    out.append("project code, inclusive:")
    out += [f"  {n / total:6.1%}  {name}" for name, n in project.most_common(most)]
    return out
