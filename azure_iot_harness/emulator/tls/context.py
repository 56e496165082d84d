"""Server-side TLS settings: the certificate, protocol versions, ALPN, client certificates.

IoT Hub requests a client certificate in every handshake but decides at CONNECT (or at the DPS
request), from the identity's registered authentication, whether and how to check it:
self-signed device certificates (matched by thumbprint) must pass the handshake, and one from an
unknown CA is refused by a CONNACK or an HTTP 401, not by a TLS alert. So the context requests a
certificate and accepts whatever the client sends (or nothing), keeping the chain
(`openssl.accept_any_client_certificate`); `emulator.protocol.x509` checks it afterwards.
Sessions are never resumed (no tickets, no session cache), so every handshake carries the
client's whole chain; the server name a client asks for (SNI) is kept for the trace.

TLS 1.2 only, like IoT Hub's classic `*.azure-devices.net` endpoints (TLS 1.3 exists only on
preview endpoints): a device that cannot do 1.2 fails here as it would there. Ciphers and
options are Python's defaults for a server context.
"""

from __future__ import annotations

import os
import ssl
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path

from ...errors import ConfigError
from . import openssl

TLS_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


class ServerContext:
    """One listener's TLS settings (an `ssl.SSLContext`) and what it was built with."""

    def __init__(self, context: ssl.SSLContext, *, alpn: tuple[str, ...], versions: tuple[str, str]) -> None:
        self.context = context
        self.alpn = alpn
        self.versions = versions


def server_context(
    chain_pem: bytes,
    key_pem: bytes,
    *,
    alpn: Sequence[str] = (),
    minimum: str = "TLSv1.2",
    maximum: str = "TLSv1.2",
) -> ServerContext:
    """A server context presenting `chain_pem` (leaf first) that asks every client for a
    certificate and accepts any; `alpn` are the protocols it selects from a client's offer
    (none: ALPN is not answered)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[minimum]
    ctx.maximum_version = TLS_VERSIONS[maximum]
    with tempfile.TemporaryDirectory() as tmp:
        # load_cert_chain reads files only (bpo-16487).
        chain, key = Path(tmp) / "chain.pem", Path(tmp) / "key.pem"
        chain.write_bytes(chain_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key_pem)
        try:
            ctx.load_cert_chain(chain, key)
        except ssl.SSLError as exc:
            raise ConfigError(f"cannot load the server certificate or key: {exc}") from exc
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    openssl.accept_any_client_certificate(ctx)
    # No session resumption: a resumed session carries no client certificate chain (OpenSSL
    # keeps the leaf only), and the services must see the whole chain on every connection.
    ctx.options |= ssl.OP_NO_TICKET
    ctx.num_tickets = 0
    openssl.disable_session_cache(ctx)
    ctx.sni_callback = remember_sni
    return ServerContext(ctx, alpn=tuple(alpn), versions=(minimum, maximum))


# The server name each handshake's client asked for (SNI), until its SSLObject is gone.
_requested: weakref.WeakKeyDictionary[ssl.SSLObject, str] = weakref.WeakKeyDictionary()


def remember_sni(obj: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
    """The server contexts' `sni_callback` (OpenSSL calls it inside the handshake)."""
    if name:
        _requested[obj] = name


def requested_name(obj: ssl.SSLObject) -> str | None:
    """The server name the client asked for in its ClientHello, if any."""
    return _requested.get(obj)
