"""The roster: every edge enrolled by this control centre and every certificate it was given.

Why a file of its own (``edges.json`` in the state directory, never in the repository): the
ACL and the CRL are rendered from it, so it must survive restarts and be the one truth. It
holds no secret: serials, fingerprints and dates only (keys live on the edges, the CA key in
``ca/``). Writes are atomic so a crash never leaves half a roster.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from ioe.edge.files import write_file
from ioe.edge.identity import EdgeId


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


@dataclass
class CertRecord:
    serial: int
    fingerprint_sha256: str
    issued_at: dt.datetime
    not_after: dt.datetime
    revoked_at: dt.datetime | None = None
    #: "revoked" (by an operator) or "superseded" (replaced by ``ioe edge renew``)
    revoke_reason: str | None = None

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["serial"] = str(self.serial)  # 160-bit serials: not every JSON reader keeps them
        out.update(issued_at=_iso(self.issued_at), not_after=_iso(self.not_after),
                   revoked_at=_iso(self.revoked_at))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> CertRecord:
        return cls(serial=int(str(data["serial"])),
                   fingerprint_sha256=str(data["fingerprint_sha256"]),
                   issued_at=_parse(str(data["issued_at"])) or dt.datetime.min,
                   not_after=_parse(str(data["not_after"])) or dt.datetime.min,
                   revoked_at=_parse(data.get("revoked_at")),  # type: ignore[arg-type]
                   revoke_reason=data.get("revoke_reason"))  # type: ignore[arg-type]


@dataclass
class EdgeRecord:
    id: EdgeId
    enrolled_at: dt.datetime
    certificates: list[CertRecord] = field(default_factory=list)
    revoked_at: dt.datetime | None = None
    #: where the bundle was written (renew writes the new certificate there by default)
    bundle_dir: str | None = None
    kafka_user: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def current(self) -> CertRecord | None:
        valid = [c for c in self.certificates if c.revoked_at is None]
        return valid[-1] if valid else None

    def to_dict(self) -> dict[str, object]:
        return {"community": self.id.community, "edge": self.id.edge,
                "enrolled_at": _iso(self.enrolled_at), "revoked_at": _iso(self.revoked_at),
                "bundle_dir": self.bundle_dir, "kafka_user": self.kafka_user,
                "certificates": [c.to_dict() for c in self.certificates]}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> EdgeRecord:
        certs = data.get("certificates") or []
        assert isinstance(certs, list)
        return cls(id=EdgeId(str(data["community"]), str(data["edge"])),
                   enrolled_at=_parse(str(data["enrolled_at"])) or dt.datetime.min,
                   revoked_at=_parse(data.get("revoked_at")),  # type: ignore[arg-type]
                   bundle_dir=data.get("bundle_dir"),  # type: ignore[arg-type]
                   kafka_user=data.get("kafka_user"),  # type: ignore[arg-type]
                   certificates=[CertRecord.from_dict(c) for c in certs])


@dataclass(frozen=True)
class EdgeStatus:
    """One line of ``ioe edge list`` (and of the control centre's edges)."""

    id: EdgeId
    state: str  # "active" | "revoked" | "expired"
    not_after: dt.datetime | None
    serial: int | None


class Roster:
    """``edges.json``: load, change in memory, :meth:`save` atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.edges: dict[EdgeId, EdgeRecord] = {}
        if path.exists():
            for item in orjson.loads(path.read_bytes()).get("edges", []):
                record = EdgeRecord.from_dict(item)
                self.edges[record.id] = record

    def save(self) -> None:
        document = {"version": 1,
                    "edges": [r.to_dict() for _, r in sorted(self.edges.items())]}
        write_file(self.path, orjson.dumps(document, option=orjson.OPT_INDENT_2))

    def find(self, edge: str, community: str | None = None) -> EdgeRecord:
        """The edge named ``edge`` (``community`` is needed only when two share the name)."""
        matches = [r for i, r in self.edges.items()
                   if i.edge == edge and (community is None or i.community == community)]
        if not matches:
            raise KeyError(f"edge {edge!r} is not enrolled"
                           + (f" in community {community!r}" if community else ""))
        if len(matches) > 1:
            raise KeyError(f"edge {edge!r} is enrolled in several communities "
                           f"({', '.join(sorted(r.id.community for r in matches))}): "
                           "give --community")
        return matches[0]

    def active(self) -> list[EdgeId]:
        return [i for i, r in self.edges.items() if r.active and r.current is not None]

    def status(self, now: dt.datetime) -> list[EdgeStatus]:
        """Every enrolled edge with its state and current certificate's expiry, by id."""
        out = []
        for edge, record in sorted(self.edges.items()):
            current = record.current
            latest = current or (record.certificates[-1] if record.certificates else None)
            state = ("revoked" if not record.active else
                     "expired" if current is None or current.not_after <= now else "active")
            out.append(EdgeStatus(edge, state, latest.not_after if latest else None,
                                  latest.serial if latest else None))
        return out

    def revoked_serials(self) -> list[tuple[int, dt.datetime]]:
        return [(c.serial, c.revoked_at) for r in self.edges.values()
                for c in r.certificates if c.revoked_at is not None]
