"""Why a connection failed, in one line: the TCP/TLS reasons, found from an exception or by
probing the way a tool that failed would have connected (CONNACK texts: `errors.connack_text`)."""

from __future__ import annotations

import socket
import ssl

from ..running.errors import CommandError
from .tls import tls_context


def tls_failure(exc: BaseException, address: str, port: int, ca_file: str | None, what: str = "") -> CommandError:
    """A one-line reason for a failed connection: unreachable, untrusted, or refused by TLS."""
    where = f"{what} at {address}:{port}" if what else f"{address}:{port}"
    trust = f"the CA file {ca_file}" if ca_file else "the system's CA store"
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        if "mismatch" in reason or "match" in reason:
            return CommandError(f"the certificate of {where} does not cover the name {address}: {reason}")
        return CommandError(f"TLS: the certificate of {where} is not trusted by {trust} ({reason}); wrong --ca-file?")
    if isinstance(exc, ssl.SSLError):
        return CommandError(f"TLS handshake with {where} failed: {exc.reason or exc}")
    if isinstance(exc, socket.gaierror):
        return CommandError(f"cannot resolve {address}: {exc.strerror or exc}")
    if isinstance(exc, ConnectionRefusedError):
        return CommandError(f"cannot reach {where}: connection refused (is it running, on that port?)")
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return CommandError(f"cannot reach {where}: timed out")
    if isinstance(exc, OSError):
        return CommandError(f"cannot reach {where}: {exc.strerror or exc}")
    return CommandError(f"connection to {where} failed: {exc}")


def probe_tls(
    address: str, port: int, ca_file: str | None, cert_file: str | None = None, key_file: str | None = None, what: str = ""
) -> CommandError | None:
    """Why a tool could not connect, found by doing its TCP and TLS steps ourselves; None when
    both work (then the MQTT step is what failed)."""
    ctx = tls_context(ca_file, cert_file, key_file)
    try:
        with socket.create_connection((address, port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=address):
                pass
    except (OSError, ssl.SSLError) as exc:
        return tls_failure(exc, address, port, ca_file, what)
    return None
