"""Writing state files safely: private files 0600 from the first byte, atomic replacement.

Why: a key written with the default umask and ``chmod``-ed afterwards is world-readable for a
moment; ``os.open(..., 0o600)`` creates it private. Replacing through a temporary file and
``os.replace`` means a reader (Mosquitto reloading its ACL or CRL on SIGHUP) never sees half a
file.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE = 0o600
PUBLIC = 0o644


def write_file(path: Path, data: bytes, mode: int = PUBLIC) -> None:
    """Atomically replace ``path`` with ``data``, created with ``mode`` (never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; never wider than asked
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        if fd != -1:
            os.close(fd)
    os.replace(tmp, path)


def write_private(path: Path, data: bytes) -> None:
    """A secret (private key, password): readable by its owner only."""
    write_file(path, data, PRIVATE)


def private_dir(path: Path) -> Path:
    """A directory only its owner can enter (it holds keys)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
