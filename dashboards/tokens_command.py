"""``ioe tokens``: issue and revoke dashboard access tokens.

    ioe tokens issue --member CID:MID [--ttl-days N]
    ioe tokens issue --operator --community CID [--community CID2 …] [--ttl-days N] [--name N]
    ioe tokens revoke TOKEN_ID

The token is printed once on stdout (give it to its holder; it is never logged); the token id
is what ``revoke`` takes. The member and communities are checked against the registry so a
typo does not produce a token that grants nothing.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from dashboards import tokens
from ioe.messages import Channel, ChannelKind, MessageError
from ioe.registry import Registry, RegistryError, load_registry
from ioe.settings import Settings, get_settings


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    issue = sub.add_parser("issue", help="issue a member or operator token")
    issue.add_argument("--member", metavar="CID:MID", help="member token for CID:MID")
    issue.add_argument("--operator", action="store_true", help="operator token")
    issue.add_argument("--community", action="append", default=[], metavar="CID",
                       help="community of an operator token (repeat for several)")
    issue.add_argument("--ttl-days", type=float, default=None, help="validity in days")
    issue.add_argument("--name", default=None,
                       help="who holds the token (signs the alarm actions taken with it)")
    issue.add_argument("--registry", default=None, help="registry YAML (default IOE_REGISTRY)")
    issue.add_argument("--no-check", action="store_true",
                       help="do not check the member/communities against the registry")
    revoke = sub.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id")


def _registry(args: argparse.Namespace, settings: Settings) -> Registry | None:
    if args.no_check:
        return None
    return load_registry(Path(args.registry) if args.registry else settings.registry_path)


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or get_settings()
    if args.action == "revoke":
        tokens.revoke(settings, args.token_id)
        print(f"revoked token {args.token_id.strip()}")
        return 0
    if args.ttl_days is not None and args.ttl_days <= 0:
        print("ioe tokens: --ttl-days must be positive", file=sys.stderr)
        return 2
    if bool(args.member) == bool(args.operator):
        print("ioe tokens issue: give either --member CID:MID or --operator --community CID",
              file=sys.stderr)
        return 2
    try:
        registry = _registry(args, settings)
    except (RegistryError, OSError) as exc:
        print(f"ioe tokens: cannot read the registry: {exc}", file=sys.stderr)
        return 2
    if args.member:
        try:  # CID:MID names the member channel member:CID:MID
            channel = Channel.parse(f"{ChannelKind.MEMBER}:{args.member}")
        except MessageError:
            print("ioe tokens issue: --member takes CID:MID", file=sys.stderr)
            return 2
        cid, mid = channel.community_id, channel.member_id or ""
        community = registry.community(cid) if registry else None
        if registry and (community is None or community.member(mid) is None):
            print(f"ioe tokens issue: no member {mid!r} in community {cid!r}", file=sys.stderr)
            return 2
        token, principal = tokens.issue(settings, role="member", communities=[cid],
                                        member_id=mid, ttl_days=args.ttl_days, name=args.name)
    else:
        if not args.community:
            print("ioe tokens issue: --operator needs at least one --community", file=sys.stderr)
            return 2
        unknown = [c for c in args.community if registry and registry.community(c) is None]
        if unknown:
            print(f"ioe tokens issue: unknown community {unknown[0]!r}", file=sys.stderr)
            return 2
        token, principal = tokens.issue(settings, role="operator",
                                        communities=list(dict.fromkeys(args.community)),
                                        ttl_days=args.ttl_days, name=args.name)
    expires = datetime.fromtimestamp(principal.expires_at, UTC).isoformat(timespec="seconds")
    print(token)
    print(f"token id {principal.token_id}; {principal.describe()}; expires {expires}",
          file=sys.stderr)
    return 0

