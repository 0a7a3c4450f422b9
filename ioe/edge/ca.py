"""The project's certificate authority: one self-signed root, server and edge certificates, CRL.

Why our own CA: every edge and the brokers must trust exactly one issuer that we control, so a
certificate means "enrolled by this installation" and nothing else (a public CA would vouch for
anyone with a domain). The CA key lives in the state directory of the control centre only
(``ca/ca.key``, mode 0600); an edge gets its certificate, never the CA key. An edge may keep its
own key entirely on its machine by sending a CSR (:func:`make_request` on the edge,
:meth:`CertificateAuthority.sign_request` here).

Keys are EC P-256: supported by Mosquitto/OpenSSL and Java's TLS alike, small and fast on the
small computers edges run on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ioe.edge.files import private_dir, write_file, write_private

CA_DAYS = 3650
EDGE_DAYS = 365
SERVER_DAYS = 825
#: how long a CRL is valid (longer than an edge certificate): OpenSSL refuses every client once
#: it is past; every change and every `ioe stack up --secure` write a fresh one anyway
CRL_DAYS = 400


class CAError(RuntimeError):
    pass


@dataclass(frozen=True)
class Issued:
    """A certificate just issued: what the roster records and the bundle ships."""

    serial: int
    common_name: str
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint_sha256: str
    pem: bytes


@dataclass(frozen=True)
class Revoked:
    serial: int
    revoked_at: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_request(common_name: str, key_path: Path) -> bytes:
    """On the edge: create its private key (0600) and return a CSR (PEM) for the CA to sign."""
    key = new_key()
    write_private(key_path, key_pem(key))
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def load_certificate(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


class CertificateAuthority:
    """The CA in ``directory`` (``ca.key`` 0600, ``ca.crt``, ``crl.pem``), created on first use."""

    def __init__(self, directory: Path, name: str = "IoE Comunidades edge CA") -> None:
        self.directory = directory
        self.key_path = directory / "ca.key"
        self.cert_path = directory / "ca.crt"
        self.crl_path = directory / "crl.pem"
        if not self.key_path.exists():
            self._create(name)
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CAError(f"{self.key_path}: not an EC private key")
        self._key = key
        self.certificate = load_certificate(self.cert_path.read_bytes())

    def _create(self, name: str) -> None:
        private_dir(self.directory)
        key = new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, "IoE Comunidades")])
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                             crl_sign=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(ski, critical=False)
                .sign(key, hashes.SHA256()))
        write_private(self.key_path, key_pem(key))
        write_file(self.cert_path, cert.public_bytes(serialization.Encoding.PEM))

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def _issue(self, common_name: str, public_key: ec.EllipticCurvePublicKey, days: int,
               *, server_names: tuple[str, ...] = ()) -> Issued:
        import ipaddress

        now = _now()
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                               common_name)]))
                   .issuer_name(self.certificate.subject).public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_agreement=True,
                                                key_cert_sign=False, crl_sign=False,
                                                content_commitment=False,
                                                key_encipherment=False, data_encipherment=False,
                                                encipher_only=False, decipher_only=False),
                                  critical=True)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self._key.public_key()), critical=False))
        if server_names:
            alt: list[x509.GeneralName] = []
            for name in server_names:
                try:
                    alt.append(x509.IPAddress(ipaddress.ip_address(name)))
                except ValueError:
                    alt.append(x509.DNSName(name))
            builder = (builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
                       .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                      critical=False))
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return Issued(serial=cert.serial_number, common_name=common_name,
                      not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                      fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
                      pem=cert.public_bytes(serialization.Encoding.PEM))

    def issue_client(self, common_name: str, key_path: Path,
                     days: int = EDGE_DAYS) -> Issued:
        """A new key (written 0600 at ``key_path``) and its client certificate."""
        key = new_key()
        write_private(key_path, key_pem(key))
        return self._issue(common_name, key.public_key(), days)

    def sign_request(self, csr_pem: bytes, common_name: str, days: int = EDGE_DAYS) -> Issued:
        """Sign an edge's CSR: its key never left the edge. The subject is ours, not the CSR's
        (an edge cannot choose its identity)."""
        csr = x509.load_pem_x509_csr(csr_pem)
        if not csr.is_signature_valid:
            raise CAError("the certificate request's signature is not valid")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise CAError("the certificate request must carry an EC key")
        return self._issue(common_name, public_key, days)

    def issue_server(self, common_name: str, names: tuple[str, ...], key_path: Path,
                     days: int = SERVER_DAYS) -> Issued:
        """The brokers' certificate (SAN = the names edges dial), key 0600 at ``key_path``."""
        key = new_key()
        write_private(key_path, key_pem(key))
        return self._issue(common_name, key.public_key(), days, server_names=names)

    def write_crl(self, revoked: list[Revoked], days: int = CRL_DAYS) -> bytes:
        """Write ``crl.pem`` listing ``revoked``; returns its PEM."""
        now = _now()
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(self.certificate.subject)
                   .last_update(now - dt.timedelta(minutes=5))
                   .next_update(now + dt.timedelta(days=days)))
        for item in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(item.serial)
                .revocation_date(item.revoked_at).build())
        crl = builder.sign(self._key, hashes.SHA256())
        pem = crl.public_bytes(serialization.Encoding.PEM)
        write_file(self.crl_path, pem)
        return pem
