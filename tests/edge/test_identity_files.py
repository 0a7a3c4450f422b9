"""The CA, the roster, the ACL and the bundle without any server: what each promises."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ioe import cli
from ioe.edge import acl, topics
from ioe.edge.authority import EdgeAuthority, EnrolError
from ioe.edge.bundle import Endpoints, load_bundle
from ioe.edge.ca import CertificateAuthority, make_request
from ioe.edge.identity import EdgeId, IdentityError
from ioe.edge.roster import Roster

A = EdgeId("ce-uno", "plant-a")
B = EdgeId("ce-uno", "plant-b")
NO_KAFKA = Endpoints("127.0.0.1", 8883, None)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_private_keys_are_0600_from_the_start(tmp_path: Path) -> None:
    old = os.umask(0)  # the most permissive umask must not widen a key file
    try:
        authority = EdgeAuthority(tmp_path / "state")
        bundle = authority.enrol(A, tmp_path / "bundle", NO_KAFKA)
        server = authority.server_identity(("localhost", "127.0.0.1"))
    finally:
        os.umask(old)
    assert mode(authority.ca.key_path) == 0o600
    assert mode(server.key_path) == 0o600
    assert mode(bundle.key_path) == 0o600
    assert mode(tmp_path / "state") == 0o700 and mode(tmp_path / "bundle") == 0o700
    assert mode(bundle.cert_path) == 0o644
    # the manifest names files only: no key, no password
    manifest = (bundle.directory / "bundle.yaml").read_text()
    assert "PRIVATE" not in manifest and "password:" not in manifest


def test_edge_certificate_is_signed_by_the_ca_for_its_principal(tmp_path: Path) -> None:
    authority = EdgeAuthority(tmp_path / "state")
    bundle = authority.enrol(A, tmp_path / "bundle", NO_KAFKA, days=30)
    cert = x509.load_pem_x509_certificate(bundle.cert_path.read_bytes())
    ca = authority.ca.certificate
    cert.verify_directly_issued_by(ca)
    assert cert.subject.rfc4514_string() == "CN=ce-uno.plant-a"
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=29) < left <= dt.timedelta(days=30)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in usage
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_a_csr_keeps_the_key_on_the_edge_and_cannot_choose_its_name(tmp_path: Path) -> None:
    csr = make_request("ce-dos.someone-else", tmp_path / "edge" / "edge.key")
    authority = EdgeAuthority(tmp_path / "state")
    bundle = authority.enrol(A, tmp_path / "bundle", NO_KAFKA, csr=csr)
    assert not bundle.key_path.exists()  # the CA side never had it
    cert = x509.load_pem_x509_certificate(bundle.cert_path.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=ce-uno.plant-a"
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key((tmp_path / "edge" / "edge.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]


def test_revoke_and_renew_drive_the_crl_and_the_acl(tmp_path: Path) -> None:
    authority = EdgeAuthority(tmp_path / "state")
    first = {e: authority.enrol(e, tmp_path / e.principal, NO_KAFKA) for e in (A, B)}
    serial_b = x509.load_pem_x509_certificate(first[B].cert_path.read_bytes()).serial_number
    with pytest.raises(EnrolError):
        authority.enrol(A, tmp_path / "again", NO_KAFKA)  # enrolled: renew, not enrol
    authority.renew(B.edge)
    authority.revoke(A.edge)
    crl = x509.load_pem_x509_crl(authority.ca.crl_path.read_bytes())
    assert crl.is_signature_valid(authority.ca.certificate.public_key())  # type: ignore[arg-type]
    revoked = {r.serial_number for r in crl}
    new_b = x509.load_pem_x509_certificate(first[B].cert_path.read_bytes()).serial_number
    assert serial_b in revoked and new_b not in revoked
    assert authority.roster.edges[A].certificates[0].serial in revoked
    text = authority.acl_path.read_text()
    assert f"user {B.principal}" in text and A.principal not in text
    states = {s.id: s.state for s in authority.status()}
    assert states == {A: "revoked", B: "active"}
    # the roster survives a restart of the control centre
    again = Roster(tmp_path / "state" / "edges.json")
    assert again.edges[B].current is not None and not again.edges[A].active


def test_acl_gives_each_edge_its_own_tree_only() -> None:
    text = acl.render([B, A])
    blocks = [b for b in text.split("\n\n") if b.startswith("user ")]
    assert blocks[0].splitlines() == [f"user {A.principal}", f"topic write {topics.up(A)}",
                                      f"topic write {topics.heartbeat(A)}",
                                      f"topic read {topics.commands(A)}"]
    assert "+" not in text.replace("#", "")  # no single-level wildcard reaching another edge


@pytest.mark.parametrize("bad", ["a/b", "a b", "#", "+", "", "a.b", "-x", "x" * 65])
def test_ids_that_would_break_an_acl_or_a_topic_are_refused(bad: str) -> None:
    with pytest.raises(IdentityError):
        EdgeId("ce-uno", bad)


def test_cli_enrol_list_revoke_renew(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = str(tmp_path / "state")

    def edge(*args: str) -> int:
        return cli.main(["edge", "--state", state, *args])

    assert edge("enrol", "--community", "ce-uno", "--edge", "plant-a", "--out",
                str(tmp_path / "a"), "--kafka", "none") == 0
    assert load_bundle(tmp_path / "a").id == A
    assert edge("renew", "plant-a") == 0
    assert edge("list", "--no-contact") == 0
    assert edge("revoke", "plant-a") == 0
    assert edge("revoke", "nobody") == 1
    assert edge("enrol", "--community", "ce/x", "--edge", "e", "--out",
                str(tmp_path / "x"), "--kafka", "none") == 1
    out = capsys.readouterr()
    assert "ce-uno" in out.out and "active" in out.out
    assert "not enrolled" in out.err and "community id" in out.err
    # no key material ever printed
    assert "PRIVATE KEY" not in out.out + out.err


def test_ca_is_created_once_and_reused(tmp_path: Path) -> None:
    first = CertificateAuthority(tmp_path / "ca")
    second = CertificateAuthority(tmp_path / "ca")
    assert first.cert_pem == second.cert_pem


def test_a_stale_pid_file_never_signals_another_process(tmp_path: Path) -> None:
    """SIGHUP kills a process that does not handle it: only a mosquitto is signalled."""
    from ioe.edge.authority import sighup_pid_file

    pid_file = tmp_path / "mosquitto.pid"
    pid_file.write_text(str(os.getpid()))  # this very test process, not a mosquitto
    sighup_pid_file(pid_file)  # would end the test run if it signalled
    pid_file.write_text("999999999")
    sighup_pid_file(pid_file)
