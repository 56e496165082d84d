"""How each TLS handshake ended, as the packet trace and a device's certification read it.

A device that refuses a bad server certificate ends the handshake with a TLS alert (which one
says why: `unknown_ca`, `bad_certificate`, `certificate_expired`…); one that accepts it
completes the handshake; one that gives up silently just closes; one that never started TLS
sends its CONNECT (or anything else) in the clear. The listener reports one `HandshakeOutcome`
per accepted TLS connection to its observers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

COMPLETED = "completed"
ALERT = "alert"  # the client sent a TLS alert (`alert` names it)
CLOSED = "closed"  # the client closed (or went silent until the timeout) without an alert
CONNECT_WITHOUT_HANDSHAKE = "connect-without-handshake"  # an MQTT CONNECT in the clear
PLAINTEXT = "plaintext"  # other bytes that are not a TLS handshake (HTTP, garbage)
FAILED = "failed"  # the handshake failed otherwise (no common version or cipher…): `reason`

# First bytes of a connection: a TLS handshake record, and an MQTT CONNECT's fixed header.
TLS_HANDSHAKE_RECORD = 0x16
MQTT_CONNECT = 0x10


@dataclass(frozen=True)
class HandshakeOutcome:
    outcome: str
    alert: str | None = None  # RFC 5246/8446 name, lower case: "unknown_ca"
    version: str | None = None
    cipher: str | None = None
    sni: str | None = None  # the server name the client asked for
    server_cert: str | None = None  # the fault certificate served, None for the normal one
    reason: str | None = None  # for failed/closed/plaintext: what happened

    def to_json(self) -> dict[str, str | None]:
        return asdict(self)


def plaintext_outcome(first: bytes, **fields: str | None) -> HandshakeOutcome | None:
    """None when `first` (a connection's first bytes) starts a TLS handshake; else what it is."""
    if not first or first[0] == TLS_HANDSHAKE_RECORD:
        return None
    shown = first[:16].hex(" ")
    if first[0] == MQTT_CONNECT:
        return HandshakeOutcome(CONNECT_WITHOUT_HANDSHAKE, reason=f"an MQTT CONNECT in the clear ({shown}…)", **fields)
    return HandshakeOutcome(PLAINTEXT, reason=f"bytes that are not TLS ({shown}…)", **fields)
