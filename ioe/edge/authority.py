"""Enrol, revoke, renew and list edges; keep the brokers' ACL and CRL in step with the roster.

Why one place: every change must reach the brokers the same way — roster saved, ACL and CRL
rendered again, Mosquitto told to re-read them (SIGHUP: Mosquitto 2.0 reloads ``acl_file`` and
the listener's ``crlfile`` without dropping anyone else) — so a revoked edge is refused from its
next connection while nothing else restarts.

The state directory (default ``<IOE_LOCAL_DIR>/edge``, or ``IOE_EDGE_DIR``) holds::

    ca/ca.key ca/ca.crt ca/crl.pem   the CA (key 0600, directory 0700)
    server/broker.key broker.crt     the brokers' TLS identity
    edges.json                       the roster (no secrets)
    mosquitto.acl                    rendered ACL of the secure listener
    mosquitto.pid                    written by whoever started a secure Mosquitto: signalled
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ioe.edge import acl
from ioe.edge.bundle import Bundle, Endpoints
from ioe.edge.ca import EDGE_DAYS, CertificateAuthority, Issued, Revoked, load_certificate
from ioe.edge.files import private_dir, write_file, write_private
from ioe.edge.identity import EdgeId
from ioe.edge.kafka_access import KafkaAccess, KafkaAccessError
from ioe.edge.roster import CertRecord, EdgeRecord, EdgeStatus, Roster
from ioe.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: the brokers' certificate is re-issued when it has less than this left
SERVER_RENEW_BEFORE = dt.timedelta(days=30)


class EnrolError(RuntimeError):
    pass


def default_state_dir(settings: Settings | None = None) -> Path:
    env = os.environ.get("IOE_EDGE_DIR")
    if env:
        return Path(env)
    return (settings or get_settings()).local_dir / "edge"


@dataclass(frozen=True)
class ServerIdentity:
    cert_path: Path
    key_path: Path
    ca_path: Path


@dataclass(frozen=True)
class BrokerFiles:
    """What the brokers' secure listeners read, all in the state directory: Mosquitto's
    ``cafile``/``certfile``/``keyfile``/``crlfile``/``acl_file`` and Kafka's PEM keystore."""

    ca: Path
    cert: Path
    key: Path
    kafka_keystore: Path
    crl: Path
    acl: Path

    def as_dict(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in
                ("ca", "cert", "key", "kafka_keystore", "crl", "acl")}


def server_names_from_env() -> tuple[str, ...]:
    """The names the broker certificate is valid for: this machine, ``IOE_SECURE_NAMES``
    (comma separated) and ``IOE_SECURE_HOST`` (the name edges dial)."""
    import socket

    names = ["localhost", "127.0.0.1", socket.gethostname()]
    names += [n for n in os.environ.get("IOE_SECURE_NAMES", "").split(",") if n]
    names.append(os.environ.get("IOE_SECURE_HOST", "127.0.0.1"))
    return tuple(dict.fromkeys(names))


#: how the authority makes Mosquitto re-read its files; tests and the stack use the default
Reloader = Callable[[Path], None]


def sighup_pid_file(pid_file: Path) -> None:
    """SIGHUP the Mosquitto whose pid is in ``pid_file`` (nothing when none is running)."""
    try:
        pid = int(pid_file.read_text().strip() or 0)
    except (OSError, ValueError):
        return
    if pid <= 0:
        return
    try:  # a stale pid may now be another process, which SIGHUP would kill: check first
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        log.info("no mosquitto at pid %d (stale %s)", pid, pid_file)
        return
    if not command.endswith(b"mosquitto"):
        log.warning("pid %d in %s is not mosquitto (%s): not signalled", pid, pid_file,
                    command.decode(errors="replace"))
        return
    try:
        os.kill(pid, signal.SIGHUP)
        log.info("asked mosquitto (pid %d) to reload its ACL and CRL", pid)
    except ProcessLookupError:
        log.info("no mosquitto at pid %d (stale %s)", pid, pid_file)


class EdgeAuthority:
    def __init__(self, state_dir: Path | None = None, *,
                 reload: Reloader = sighup_pid_file, kafka: KafkaAccess | None = None) -> None:
        self.state_dir = private_dir(state_dir or default_state_dir())
        self.ca = CertificateAuthority(self.state_dir / "ca")
        self.roster = Roster(self.state_dir / "edges.json")
        self.acl_path = self.state_dir / "mosquitto.acl"
        self.pid_file = self.state_dir / "mosquitto.pid"
        self._reload = reload
        #: grants and removes the edges' Kafka credentials and ACLs (None: MQTT only)
        self.kafka = kafka

    # -- the brokers' side ---------------------------------------------------------------
    def server_identity(self, names: tuple[str, ...]) -> ServerIdentity:
        """The brokers' key and certificate for ``names``, issued again when missing, when a
        name is new or when it is about to expire."""
        directory = private_dir(self.state_dir / "server")
        cert_path, key_path = directory / "broker.crt", directory / "broker.key"
        if not self._server_cert_fits(cert_path, key_path, names):
            issued = self.ca.issue_server("ioe-broker", names, key_path)
            write_file(cert_path, issued.pem)
        return ServerIdentity(cert_path, key_path, self.ca.cert_path)

    def broker_files(self, names: tuple[str, ...]) -> BrokerFiles:
        """Write (or refresh) everything the secure listeners read: the broker certificate
        for ``names``, Kafka's PEM keystore (key + certificate, 0600), and the ACL and CRL as
        of now (a CRL past its next update refuses everyone). ``ioe stack up --secure`` calls
        it before starting the brokers; ``ioe edge broker-files`` for brokers run elsewhere
        (the compose file's ``secure-init``)."""
        server = self.server_identity(names)
        keystore = server.key_path.parent / "kafka-keystore.pem"
        write_private(keystore, server.key_path.read_bytes() + server.cert_path.read_bytes())
        self.publish()
        return BrokerFiles(ca=server.ca_path, cert=server.cert_path, key=server.key_path,
                           kafka_keystore=keystore, crl=self.ca.crl_path, acl=self.acl_path)

    def _server_cert_fits(self, cert_path: Path, key_path: Path,
                          names: tuple[str, ...]) -> bool:
        if not (cert_path.exists() and key_path.exists()):
            return False
        from cryptography import x509

        cert = load_certificate(cert_path.read_bytes())
        if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < SERVER_RENEW_BEFORE:
            return False
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        have = {str(v) for v in san.get_values_for_type(x509.DNSName)}
        have |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
        return set(names) <= have

    def publish(self) -> None:
        """Render ACL and CRL from the roster and make the running broker re-read them."""
        write_file(self.acl_path, acl.render(self.roster.active()).encode())
        self.ca.write_crl([Revoked(serial, at) for serial, at in self.roster.revoked_serials()])
        self._reload(self.pid_file)

    # -- edges ---------------------------------------------------------------------------
    def enrol(self, edge: EdgeId, out: Path, endpoints: Endpoints, *,
              csr: bytes | None = None, days: int = EDGE_DAYS, topic_prefix: str = "",
              kafka: bool = True) -> Bundle:
        """Issue the edge's certificate, write its bundle in ``out`` and allow it on the
        brokers. With ``csr`` the key stays where the CSR was made (the edge); without, the key
        is created in ``out`` (0600): run it on the edge, or move the directory there."""
        existing = self.roster.edges.get(edge)
        if existing is not None and existing.active:
            raise EnrolError(f"edge {edge} is already enrolled (renew it with `ioe edge renew "
                             f"{edge.edge}`, or revoke it first)")
        bundle = self._write_bundle(edge, out, endpoints, csr=csr, days=days,
                                    topic_prefix=topic_prefix, kafka=kafka)
        if bundle.kafka_user:
            if self.kafka is None:
                raise EnrolError("the bundle names a Kafka listener but no Kafka admin is "
                                 "configured (or enrol with --kafka none)")
            try:
                self.kafka.grant(bundle.kafka_user, edge.community, bundle.kafka_password())
            except KafkaAccessError as exc:
                raise EnrolError(f"{exc} (or enrol with --kafka none)") from exc
        record = EdgeRecord(id=edge, enrolled_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
                            bundle_dir=str(out.resolve()), kafka_user=bundle.kafka_user)
        if existing is not None:  # re-enrolment after a revocation: keep the history
            record.certificates = existing.certificates
        record.certificates.append(self._cert_record(out))
        self.roster.edges[edge] = record
        self.roster.save()
        self.publish()
        log.info("enrolled edge %s (certificate until %s)", edge,
                 record.certificates[-1].not_after.date())
        return bundle

    def revoke(self, name: str, community: str | None = None) -> EdgeRecord:
        record = self.roster.find(name, community)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        record.revoked_at = now
        for cert in record.certificates:
            if cert.revoked_at is None:
                cert.revoked_at, cert.revoke_reason = now, "revoked"
        self.roster.save()
        self.publish()
        log.info("revoked edge %s", record.id)
        if record.kafka_user and self.kafka is not None:
            self.kafka.revoke(record.kafka_user)  # after MQTT: a Kafka error must not delay it
        return record

    def renew(self, name: str, community: str | None = None, out: Path | None = None, *,
              csr: bytes | None = None, days: int = EDGE_DAYS) -> Bundle:
        """A new key and certificate for an active edge; the old certificate is revoked
        (superseded), so only the new one connects from now on."""
        record = self.roster.find(name, community)
        if not record.active:
            raise EnrolError(f"edge {record.id} is revoked: enrol it again")
        target = out or (Path(record.bundle_dir) if record.bundle_dir else None)
        if target is None:
            raise EnrolError("give --out: the roster does not know where the bundle is")
        from ioe.edge.bundle import load_bundle

        try:
            old = load_bundle(target)
            endpoints, prefix = old.endpoints, old.topic_prefix
        except Exception:  # noqa: BLE001 - a fresh directory: the current defaults
            endpoints, prefix = Endpoints(), ""
        bundle = self._write_bundle(record.id, target, endpoints, csr=csr, days=days,
                                    topic_prefix=prefix, kafka=bool(record.kafka_user),
                                    keep_password=True)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        for cert in record.certificates:
            if cert.revoked_at is None:
                cert.revoked_at, cert.revoke_reason = now, "superseded"
        record.certificates.append(self._cert_record(target))
        record.bundle_dir = str(target.resolve())
        self.roster.save()
        self.publish()
        log.info("renewed edge %s (certificate until %s)", record.id,
                 record.certificates[-1].not_after.date())
        return bundle

    def status(self) -> list[EdgeStatus]:
        return self.roster.status(dt.datetime.now(dt.UTC))

    # -- helpers -------------------------------------------------------------------------
    def _write_bundle(self, edge: EdgeId, out: Path, endpoints: Endpoints, *,
                      csr: bytes | None, days: int, topic_prefix: str, kafka: bool,
                      keep_password: bool = False) -> Bundle:
        private_dir(out)
        key_path = out / "edge.key"
        issued: Issued
        if csr is not None:
            issued = self.ca.sign_request(csr, edge.principal, days)
        else:
            issued = self.ca.issue_client(edge.principal, key_path, days)
        bundle = Bundle(directory=out, id=edge, endpoints=endpoints, topic_prefix=topic_prefix,
                        kafka_user=edge.principal if kafka and endpoints.kafka_bootstrap
                        else None)
        write_file(bundle.ca_path, self.ca.cert_pem)
        write_file(bundle.cert_path, issued.pem)
        if bundle.kafka_user and not (keep_password and bundle.kafka_password_path.exists()):
            # the SCRAM secret: only in the bundle (0600); the broker keeps a salted hash
            write_private(bundle.kafka_password_path, secrets.token_urlsafe(32).encode())
        bundle.write_manifest()
        return bundle

    @staticmethod
    def _cert_record(out: Path) -> CertRecord:
        from cryptography.hazmat.primitives import hashes

        cert = load_certificate((out / "edge.crt").read_bytes())
        return CertRecord(serial=cert.serial_number,
                          fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
                          issued_at=cert.not_valid_before_utc,
                          not_after=cert.not_valid_after_utc)
