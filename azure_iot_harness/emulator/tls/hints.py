"""What to log when a client gives up on the TLS handshake: the alert it sent, and a hint.

A device that refuses the server certificate (it does not trust the CA, or the name it dialled
is not in the certificate) ends the handshake with a TLS alert and nothing more; firmware
rarely says why. The emulator's side of the handshake sees that alert, so the log line names
it and says how to fix the usual causes: which names the certificate covers, how to add one,
and which CA file the client must trust. Pure functions over the ssl module's exception.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass

# Python's ssl names a received alert `TLSV1_ALERT_…` or `SSLV3_ALERT_…` (OpenSSL 3: `TLS_ALERT_…`
# in some builds).
_ALERT = re.compile(r"(?:SSLV3|TLSV1|TLSV13|TLS)_ALERT_([A-Z0-9_]+)")
# Alerts with which a client refuses the server's certificate.
_UNTRUSTED = {"UNKNOWN_CA"}
_REFUSED_CERTIFICATE = {"UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "UNSUPPORTED_CERTIFICATE", "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED"}


@dataclass(frozen=True)
class ServerCertificate:
    """What a client needs to accept the emulator's certificate."""

    names: tuple[str, ...]  # the subjectAltNames it covers
    ca_file: str  # the root CA to trust


def client_alert(exc: BaseException) -> str | None:
    """The alert the client sent ('UNKNOWN_CA'), or None when the handshake failed otherwise."""
    reason = getattr(exc, "reason", None) if isinstance(exc, ssl.SSLError) else None
    match = _ALERT.fullmatch(reason or "")
    return match.group(1) if match else None


def explain(exc: BaseException, server: ServerCertificate | None, describe: Callable[[BaseException], str]) -> tuple[int, str]:
    """(logging level, text) for a failed handshake.

    A client that refused the certificate is a warning, with the hint; other failures (a port
    scan, a client that hung up or timed out) stay at info, as before.
    """
    alert = client_alert(exc)
    if alert is None:
        return logging.INFO, describe(exc)
    said = f"the client sent the TLS alert '{alert.lower().replace('_', ' ')}'"
    if alert not in _REFUSED_CERTIFICATE:
        return logging.WARNING, said
    text = f"{said}: it refused the server certificate"
    if server is None:
        return logging.WARNING, text
    trust = f"the client must trust the development root CA in {server.ca_file}"
    if alert in _UNTRUSTED:
        return logging.WARNING, f"{text}. Hint: {trust} (`azure-iot-harness ca` prints it)."
    names = ", ".join(server.names)
    return logging.WARNING, (
        f"{text}. Hint: the certificate covers {names}; if the device dials another name (such as "
        "{hub}.azure-devices.net or global.azure-devices-provisioning.net), add it with "
        "`serve --host-name NAME`, the `host_names` setting or AZURE_IOT_HARNESS_HOST_NAMES, and "
        f"make that name resolve to the emulator; {trust}."
    )

