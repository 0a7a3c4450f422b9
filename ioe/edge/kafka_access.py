"""An edge's access to Kafka: its SCRAM-SHA-512 credential and the ACLs of its principal.

Why these ACLs and no more: an edge produces readings (and the dead letters and command results
it owes), and consumes commands in its own consumer group; it may not read readings, balances or
the registry, create topics or touch another group. Granted through the loopback PLAINTEXT
listener, whose ANONYMOUS principal is the broker's super user (``ioe stack up --secure``).

The password itself is never sent nor kept here: kafka-python derives the salted SCRAM key
(PBKDF2, random salt) on this side and the broker stores only that. Revoking deletes the
credential (no new connection authenticates) and the ACLs (an open connection is refused at
its next request; ``connections.max.reauth.ms`` closes it within minutes).

Commands are one topic per community (``ioe.commands.<community>``), so the ACL lets an edge read
its own community's commands and no other's; :meth:`KafkaAccess.grant` creates that topic, since
the edge may not. Within a community, its edges share the topic (each executes only its own
devices); the MQTT command channel is per edge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ioe.topics import COMMAND_RESULTS, DEADLETTER, READINGS, commands_spec, commands_topic

log = logging.getLogger(__name__)

MECHANISM = "SCRAM-SHA-512"


class KafkaAccessError(RuntimeError):
    pass


@dataclass(frozen=True)
class Grant:
    """One ACL: ``operation`` on a resource for the edge's principal."""

    resource: str  # "topic" | "group"
    name: str
    operation: str  # "WRITE" | "READ" | "DESCRIBE"
    prefixed: bool = False


def grants(principal: str, community: str, topic_prefix: str = "") -> list[Grant]:
    out: list[Grant] = []
    for topic in (READINGS, DEADLETTER, COMMAND_RESULTS):
        out += [Grant("topic", topic_prefix + topic, "WRITE"),
                Grant("topic", topic_prefix + topic, "DESCRIBE")]
    commands = topic_prefix + commands_topic(community)
    out += [Grant("topic", commands, "READ"), Grant("topic", commands, "DESCRIBE"),
            Grant("group", group_prefix(principal), "READ", prefixed=True)]
    return out


def group_prefix(principal: str) -> str:
    """The consumer groups an edge may use (``ioe-modbus-edge-<principal>…``)."""
    return f"ioe-modbus-edge-{principal}"


class KafkaAccess:
    def __init__(self, admin_bootstrap: str, topic_prefix: str = "") -> None:
        self.admin_bootstrap = admin_bootstrap
        self.topic_prefix = topic_prefix

    def _admin(self):  # noqa: ANN202 - kafka-python has no types
        from kafka import KafkaAdminClient

        try:
            return KafkaAdminClient(bootstrap_servers=self.admin_bootstrap,
                                    request_timeout_ms=10_000)
        except Exception as exc:  # noqa: BLE001 - NoBrokersAvailable and friends
            raise KafkaAccessError(f"Kafka {self.admin_bootstrap} unreachable: {exc}") from exc

    @staticmethod
    def _acl(principal: str, grant: Grant):  # noqa: ANN205
        from kafka.admin import (
            ACL,
            ACLOperation,
            ACLPermissionType,
            ACLResourcePatternType,
            ResourcePattern,
            ResourceType,
        )

        pattern = ResourcePattern(
            ResourceType.TOPIC if grant.resource == "topic" else ResourceType.GROUP, grant.name,
            ACLResourcePatternType.PREFIXED if grant.prefixed else ACLResourcePatternType.LITERAL)
        return ACL(f"User:{principal}", "*", ACLOperation[grant.operation],
                   ACLPermissionType.ALLOW, pattern)

    def grant(self, principal: str, community: str, password: str) -> None:
        from kafka.admin import UserScramCredentialUpsertion

        self._ensure_commands_topic(community)
        admin = self._admin()
        try:
            # ACLs first: a broker without an authorizer refuses them, and then no credential
            # is left behind on it
            result = admin.create_acls([self._acl(principal, g) for g in
                                        grants(principal, community, self.topic_prefix)])
            failed = result.get("failed") or []
            if failed:
                raise KafkaAccessError(
                    f"ACLs of {principal} refused ({getattr(failed[0], '__name__', failed[0])}); "
                    "is Kafka running with "
                    "an authorizer (`ioe stack up --secure`)?")
            errors = admin.alter_user_scram_credentials(
                [UserScramCredentialUpsertion(principal, MECHANISM, password)])
            if errors.get(principal):
                raise KafkaAccessError(f"SCRAM credential of {principal}: {errors[principal]}")
        finally:
            admin.close()
        log.info("kafka: %s may produce readings and read the commands of %s", principal,
                 community)

    def _ensure_commands_topic(self, community: str) -> None:
        import dataclasses

        from ioe.kafka import ensure_topics
        from ioe.settings import get_settings

        settings = dataclasses.replace(get_settings(), kafka_bootstrap=self.admin_bootstrap,
                                       topic_prefix=self.topic_prefix)
        try:
            ensure_topics(settings, [commands_spec(community)], timeout_s=10)
        except Exception as exc:  # noqa: BLE001 - NoBrokersAvailable and friends
            raise KafkaAccessError(f"Kafka {self.admin_bootstrap} unreachable: {exc}") from exc

    def revoke(self, principal: str) -> None:
        from kafka.admin import (
            ACLFilter,
            ACLOperation,
            ACLPermissionType,
            ACLResourcePatternType,
            ResourcePatternFilter,
            ResourceType,
            UserScramCredentialDeletion,
        )

        admin = self._admin()
        try:
            errors = admin.alter_user_scram_credentials(
                [UserScramCredentialDeletion(principal, MECHANISM)])
            error = errors.get(principal)
            if error and "not exist" not in str(error).lower():
                raise KafkaAccessError(f"SCRAM credential of {principal}: {error}")
            admin.delete_acls([ACLFilter(f"User:{principal}", None, ACLOperation.ANY,
                                         ACLPermissionType.ANY,
                                         ResourcePatternFilter(ResourceType.ANY, None,
                                                               ACLResourcePatternType.ANY))])
        finally:
            admin.close()
        log.info("kafka: %s credential and ACLs removed", principal)
