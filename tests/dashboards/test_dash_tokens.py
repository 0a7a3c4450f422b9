"""Tokens: signed, expiring, revocable; the scope rules; the ``ioe tokens`` command."""

from __future__ import annotations

import argparse
import dataclasses
import time

import jwt
import pytest
from dash_helpers import CID, OTHER

from dashboards import tokens, tokens_command
from ioe.settings import Settings


def test_member_token_round_trip(web_settings: Settings) -> None:
    token, issued = tokens.issue(web_settings, role="member", communities=[CID], member_id="m1")
    principal = tokens.Verifier(web_settings).verify(token)
    assert principal == issued
    assert (principal.role, principal.community_id, principal.member_id) == ("member", CID, "m1")


def test_expired_tampered_foreign_and_revoked_tokens_are_refused(web_settings: Settings) -> None:
    verifier = tokens.Verifier(web_settings)
    old, _ = tokens.issue(web_settings, role="member", communities=[CID], member_id="m1",
                          ttl_days=1, now=time.time() - 2 * 86400)
    with pytest.raises(tokens.TokenError) as err:
        verifier.verify(old)
    assert err.value.code == "expired_token"

    token, principal = tokens.issue(web_settings, role="member", communities=[CID],
                                    member_id="m1")
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode({**claims, "member": "m2"}, "not-the-secret-but-32-bytes-long-0123456789", algorithm="HS256")
    with pytest.raises(tokens.TokenError) as err:
        verifier.verify(forged)
    assert err.value.code == "invalid_token"

    elsewhere = dataclasses.replace(web_settings, token_secret="another-deployment-with-its-own-32-byte-secret")
    foreign, _ = tokens.issue(elsewhere, role="operator", communities=[CID])
    with pytest.raises(tokens.TokenError):
        verifier.verify(foreign)

    assert verifier.verify(token).token_id == principal.token_id
    tokens.revoke(web_settings, principal.token_id)
    with pytest.raises(tokens.TokenError) as err:
        verifier.verify(token)  # the same verifier notices the list changed
    assert err.value.code == "revoked_token"
    with pytest.raises(tokens.TokenError):
        verifier.verify("")


def test_secret_file_is_created_once_and_private(tmp_path) -> None:  # noqa: ANN001
    settings = Settings(local_dir=tmp_path, token_secret="")
    token, _ = tokens.issue(settings, role="operator", communities=[CID])
    path = tmp_path / tokens.SECRET_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert tokens.Verifier(settings).verify(token).role == "operator"
    assert tokens.secret(settings) == path.read_text().strip()


@pytest.mark.parametrize(("channel", "member_ok", "operator_ok"), [
    (f"member:{CID}:m1", True, True),
    (f"member:{CID}:m2", False, True),
    (f"community:{CID}", True, True),
    (f"operators:{CID}", False, True),
    (f"member:{OTHER}:x1", False, False),
    (f"community:{OTHER}", False, False),
    (f"operators:{OTHER}", False, False),
    ("member:m1", False, False),
    ("community:", False, False),
    ("everything", False, False),
])
def test_channel_scopes(web_settings: Settings, channel: str, member_ok: bool,
                        operator_ok: bool) -> None:
    _, member = tokens.issue(web_settings, role="member", communities=[CID], member_id="m1")
    _, operator = tokens.issue(web_settings, role="operator", communities=[CID])
    assert (tokens.channel_refusal(member, channel) is None) is member_ok
    assert (tokens.channel_refusal(operator, channel) is None) is operator_ok


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    tokens_command.configure(parser)
    return parser.parse_args(list(argv))


def test_command_issue_and_revoke(web_settings: Settings, capsys: pytest.CaptureFixture[str]
                                  ) -> None:
    registry = str(web_settings.registry_path)
    assert tokens_command.run(_args("issue", "--member", f"{CID}:m2", "--ttl-days", "7",
                                    "--registry", registry), web_settings) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    verifier = tokens.Verifier(web_settings)
    principal = verifier.verify(token)
    assert (principal.member_id, principal.communities) == ("m2", (CID,))
    assert 6.9 * 86400 < principal.expires_at - time.time() <= 7 * 86400
    assert principal.token_id in out.err and token not in out.err

    assert tokens_command.run(_args("issue", "--operator", "--community", CID, "--community",
                                    OTHER, "--registry", registry), web_settings) == 0
    operator = verifier.verify(capsys.readouterr().out.strip())
    assert operator.communities == (CID, OTHER) and operator.member_id is None

    assert tokens_command.run(_args("revoke", principal.token_id), web_settings) == 0
    with pytest.raises(tokens.TokenError):
        verifier.verify(token)


@pytest.mark.parametrize("argv", [
    ("issue", "--member", f"{CID}:nobody"),
    ("issue", "--member", "no-colon"),
    ("issue", "--operator"),
    ("issue", "--operator", "--community", "ce-unknown"),
    ("issue", "--member", f"{CID}:m1", "--operator", "--community", CID),
    ("issue", "--member", f"{CID}:m1", "--ttl-days", "0"),
])
def test_command_refuses_tokens_that_grant_nothing(web_settings: Settings,
                                                   argv: tuple[str, ...]) -> None:
    args = _args(*argv, "--registry", str(web_settings.registry_path))
    assert tokens_command.run(args, web_settings) == 2
