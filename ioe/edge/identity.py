"""Who an edge is: ``(community, edge)`` and the one name brokers know it by.

Why one name: Mosquitto takes the certificate's CN as the username (``use_identity_as_username``)
and Kafka takes the SCRAM username as the principal; the ACLs of both are written for that same
name, ``<community>.<edge>``. Ids are restricted to letters, digits, ``-`` and ``_`` so the name
is unambiguous and safe inside an ACL file, a topic and a certificate subject.
"""

from __future__ import annotations

from dataclasses import dataclass

from ioe.registry import SAFE_ID as _ID


class IdentityError(ValueError):
    pass


@dataclass(frozen=True, order=True)
class EdgeId:
    community: str
    edge: str

    def __post_init__(self) -> None:
        for what, value in (("community", self.community), ("edge", self.edge)):
            if not _ID.match(value):
                raise IdentityError(f"{what} id {value!r}: use letters, digits, '-' and '_' "
                                    "(at most 64, starting with a letter or digit)")

    @property
    def principal(self) -> str:
        """The certificate CN, the MQTT username and the Kafka SCRAM user."""
        return f"{self.community}.{self.edge}"

    def __str__(self) -> str:
        return f"{self.community}/{self.edge}"
