"""Dashboard access tokens: signed (HS256), expiring and revocable.

Why JWT with a shared secret: every web instance can verify a token on its own, without a
session store; revocation is a small list of token ids (``jti``) in a file every instance reads
(re-read when the file changes), so revoking works without restarting anything.

The secret is ``IOE_TOKEN_SECRET`` or, when unset, a random secret created once under
``.local/token-secret`` (mode 0600). Tokens and the secret are never logged.

Scopes (DESIGN.md §6): a member token grants its own member channel and its community's
aggregate; an operator token grants everything of its communities.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt

from ioe.messages import Channel, ChannelKind, MessageError
from ioe.settings import Settings

ALGORITHM = "HS256"
ISSUER = "ioe-comunidades"
SECRET_FILE = "token-secret"
REVOKED_FILE = "revoked-tokens.txt"
DEFAULT_MEMBER_TTL_DAYS = 365
DEFAULT_OPERATOR_TTL_DAYS = 30


class TokenError(Exception):
    """A token that must be refused; ``code`` is machine-readable, the message is for humans."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    token_id: str
    role: str  # "member" | "operator"
    communities: tuple[str, ...]
    member_id: str | None
    expires_at: int
    #: who holds the token, as given at issue (``ioe tokens issue --name``); shown as the
    #: actor of alarm actions, never used to grant anything
    name: str | None = None

    @property
    def community_id(self) -> str | None:
        """The member's community (members belong to exactly one)."""
        return self.communities[0] if self.role == "member" else None

    def describe(self) -> str:
        """Safe to log: the token id and role, never the token itself."""
        if self.role == "member":
            return f"member {self.community_id}:{self.member_id} (token {self.token_id})"
        return f"operator of {','.join(self.communities)} (token {self.token_id})"

    def to_public(self) -> dict[str, object]:
        return {"token_id": self.token_id, "role": self.role,
                "communities": list(self.communities), "member_id": self.member_id,
                "expires_at": self.expires_at, "name": self.name}

    @property
    def actor(self) -> str:
        """How an action of this token is signed: its holder's name, else its id."""
        return self.name or f"token {self.token_id}"


# -- scopes: pure functions so the websocket and REST share one rule --------------------------
def member_allowed(principal: Principal, community_id: str, member_id: str) -> bool:
    if principal.role == "operator":
        return community_id in principal.communities
    return principal.community_id == community_id and principal.member_id == member_id


def community_allowed(principal: Principal, community_id: str) -> bool:
    """The community aggregate: members of it and its operators."""
    return community_id in principal.communities


def operator_allowed(principal: Principal, community_id: str) -> bool:
    return principal.role == "operator" and community_id in principal.communities


#: why a channel is refused, by its kind (the scope rule of each kind is below)
_REFUSALS = {
    ChannelKind.MEMBER: "this token does not grant that member's data",
    ChannelKind.COMMUNITY: "this token does not grant that community",
    ChannelKind.OPERATORS: "the operators channel needs an operator token of that community",
}
UNKNOWN_CHANNEL = ("unknown channel (member:<community>:<member>, community:<id> or "
                   "operators:<id>)")


def channel_allowed(principal: Principal, channel: Channel) -> bool:
    if channel.kind is ChannelKind.MEMBER:
        return member_allowed(principal, channel.community_id, channel.member_id or "")
    if channel.kind is ChannelKind.COMMUNITY:
        return community_allowed(principal, channel.community_id)
    return operator_allowed(principal, channel.community_id)


def channel_refusal(principal: Principal, channel: str | Channel) -> str | None:
    """Why ``principal`` may not subscribe to ``channel`` (None = allowed)."""
    if not isinstance(channel, Channel):
        try:
            channel = Channel.parse(channel)
        except MessageError:
            return UNKNOWN_CHANNEL
    return None if channel_allowed(principal, channel) else _REFUSALS[channel.kind]


# -- secret and revocation list ----------------------------------------------------------------
def secret(settings: Settings, *, create: bool = False) -> str:
    if settings.token_secret:
        return settings.token_secret
    path = Path(settings.local_dir) / SECRET_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    if not create:
        raise TokenError("no_secret", "no token secret: set IOE_TOKEN_SECRET or issue a token "
                                      "first (creates .local/token-secret)")
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value


def revoked_path(settings: Settings) -> Path:
    return Path(settings.local_dir) / REVOKED_FILE


def revoke(settings: Settings, token_id: str) -> None:
    path = revoked_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(token_id.strip() + "\n")


def issue(settings: Settings, *, role: str, communities: list[str], member_id: str | None = None,
          ttl_days: float | None = None, now: float | None = None,
          name: str | None = None) -> tuple[str, Principal]:
    """A new signed token and what it grants."""
    if role not in ("member", "operator"):
        raise ValueError("role must be member or operator")
    if not communities:
        raise ValueError("a token needs a community")
    if role == "member" and (member_id is None or len(communities) != 1):
        raise ValueError("a member token names one community and one member")
    issued = int(now if now is not None else time.time())
    days = ttl_days if ttl_days is not None else (
        DEFAULT_MEMBER_TTL_DAYS if role == "member" else DEFAULT_OPERATOR_TTL_DAYS)
    expires = issued + int(days * 86400)
    token_id = uuid.uuid4().hex
    claims = {"iss": ISSUER, "jti": token_id, "iat": issued, "exp": expires, "role": role,
              "communities": list(communities), "member": member_id}
    if name:
        claims["name"] = name
    token = jwt.encode(claims, secret(settings, create=True), algorithm=ALGORITHM)
    return token, Principal(token_id, role, tuple(communities), member_id, expires, name or None)


class Verifier:
    """Checks tokens for one web instance; re-reads the revocation list when it changes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._revoked: frozenset[str] = frozenset()
        self._revoked_stamp: tuple[float, int] | None = None

    def revoked(self) -> frozenset[str]:
        path = revoked_path(self.settings)
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._revoked, self._revoked_stamp = frozenset(), None
            return self._revoked
        stamp = (stat.st_mtime, stat.st_size)
        if stamp != self._revoked_stamp:
            lines = path.read_text(encoding="utf-8").splitlines()
            self._revoked = frozenset(line.strip() for line in lines if line.strip())
            self._revoked_stamp = stamp
        return self._revoked

    def verify(self, token: str | None) -> Principal:
        if not token:
            raise TokenError("missing_token", "a token is required")
        try:
            key = secret(self.settings)
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={"require": ["exp", "iat", "jti", "iss"]})
        except jwt.ExpiredSignatureError:
            raise TokenError("expired_token", "the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise TokenError("invalid_token", f"the token is not valid ({type(exc).__name__})") \
                from None
        role = claims.get("role")
        communities = claims.get("communities")
        member = claims.get("member")
        if role not in ("member", "operator") or not isinstance(communities, list) or \
                not communities or not all(isinstance(c, str) for c in communities) or \
                (role == "member" and (not isinstance(member, str) or len(communities) != 1)):
            raise TokenError("invalid_token", "the token does not say what it grants")
        if claims["jti"] in self.revoked():
            raise TokenError("revoked_token", "the token has been revoked")
        name = claims.get("name")
        return Principal(str(claims["jti"]), role, tuple(communities),
                         member if role == "member" else None, int(claims["exp"]),
                         name if isinstance(name, str) and name.strip() else None)
