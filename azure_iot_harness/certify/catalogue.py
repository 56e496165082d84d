"""Every check, in the order a run takes them (fixed and documented: the README's catalogue is
generated from this list by `azure-iot-harness certify --catalogue`).

The order: the first connection (and provisioning, or the edge gateway), the features driven from the service
side, what goes wrong (drops, refusals, withheld answers, faults at DPS), hostile TLS, the long
run, and last the rules judged over everything the device sent during the run.
"""

from __future__ import annotations

from .checks import connection, credentials, edge, features, provisioning, resilience, soak, tls
from .model import Check

_BY_ID = {c.id: c for c in (*connection.CHECKS, *features.CHECKS, *resilience.CHECKS, *credentials.CHECKS, *provisioning.CHECKS,
                            *tls.CHECKS, *soak.CHECKS, *edge.CHECKS)}

ORDER = (
    "connect.connects",
    "provisioning.registers",
    "edge.connects",
    "telemetry.publishes",
    "twin.get",
    "twin.desired",
    "twin.reported",
    "c2d.receive",
    "methods.answer",
    "methods.unknown",
    "resilience.reconnect-delay",
    "telemetry.resend-dup",
    "telemetry.no-loss",
    "edge.store-and-forward",
    "c2d.queued",
    "twin.reconcile",
    "twin.throttled",
    "credentials.token-renewal",
    "resilience.azure-faults",
    "resilience.dead-link",
    "resilience.backoff",
    "resilience.connack-timeout",
    "resilience.takeover",
    "credentials.permanent-refusal",
    "provisioning.retry-after",
    "provisioning.backoff",
    "provisioning.reprovision",
    "provisioning.follows-hub",
    "tls.rejects-wrong-host",
    "tls.rejects-unknown-root",
    "tls.rejects-expired",
    "tls.rejects-not-yet-valid",
    "tls.large-certificate",
    "tls.max-records",
    "tls.rotated-root",
    "soak.accounting",
    # Rules judged over the whole run so far.
    "mqtt.connect-first",
    "mqtt.client-id",
    "credentials.username",
    "credentials.sas-token",
    "mqtt.keep-alive",
    "mqtt.no-qos2",
    "mqtt.subscriptions",
    "mqtt.topics",
    "mqtt.will",
    "telemetry.property-bag",
    "tls.version",
    "tls.cipher",
)

assert set(ORDER) == set(_BY_ID), f"catalogue order and checks differ: {set(ORDER) ^ set(_BY_ID)}"
CHECKS: tuple[Check, ...] = tuple(_BY_ID[i] for i in ORDER)


def get(check_id: str) -> Check:
    return _BY_ID[check_id]


def ids() -> tuple[str, ...]:
    return ORDER
