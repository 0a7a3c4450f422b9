"""Helpers of the web-hardening tests: the app under uvicorn configured as ``ioe web`` runs it
(uvicorn's own proxy headers off, so only the app's ``--trusted-proxy`` handling applies), with
no Kafka consumer (these tests need no stack), optionally over TLS with a throwaway
certificate."""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dash_helpers import LiveServer

from ioe.settings import Settings


class FakeClock:
    """An injectable monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class WebServer(LiveServer):
    """``create_app(consume=False)`` under uvicorn with ``proxy_headers=False`` (as ``ioe web``
    serves it); ``tls=(certfile, keyfile)`` serves https/wss."""

    def __init__(self, settings: Settings, tls: tuple[Path, Path] | None = None,
                 **app_options: Any) -> None:
        super().__init__(settings, consume=False, **app_options)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.ws_url = f"{'wss' if tls else 'ws'}://127.0.0.1:{self.port}/ws"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                ws_max_size=64 * 1024, lifespan="on", proxy_headers=False,
                                ssl_certfile=str(tls[0]) if tls else None,
                                ssl_keyfile=str(tls[1]) if tls else None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> WebServer:
        super().start()
        return self


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key) that the test client is told to trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = directory / "web.crt", directory / "web.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    keyfile.chmod(0o600)
    return certfile, keyfile
