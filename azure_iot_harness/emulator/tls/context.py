"""Server-side TLS settings: the certificate, protocol versions, ciphers, ALPN, client certificates.

IoT Hub requests a client certificate in every handshake but decides at CONNECT (or at the DPS
request), from the identity's registered authentication, whether and how to check it:
self-signed device certificates (matched by thumbprint) must pass the handshake, and one from an
unknown CA is refused by a CONNACK or an HTTP 401, not by a TLS alert. So the context requests a
certificate and accepts whatever the client sends (or nothing); `emulator.protocol.x509` checks
it afterwards. pyOpenSSL's public `Context.set_verify` takes such a callback; Python's `ssl`
has none.

The other settings are those of the `ssl.SSLContext(PROTOCOL_TLS_SERVER)` the emulator used
before: TLS 1.2 only, like IoT Hub's classic `*.azure-devices.net` endpoints (TLS 1.3 exists
only on preview endpoints), CPython's cipher string and options, a session id context (needed
to resume sessions when client certificates are requested) and OpenSSL freeing a connection's
record buffers while it is idle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from ...errors import ConfigError

# CPython 3.11's default cipher string (`_ssl._DEFAULT_CIPHERS`): what the emulator offered
# through `ssl.SSLContext` and still offers. tests/emulator/tls/test_context.py compares them.
CIPHERS = b"@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM"
# And CPython's options for a server context, minus those the version range covers (SSLv3) or
# OpenSSL sets by itself (TLS 1.3 middlebox compatibility).
_OPTIONS = SSL.OP_ALL | SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
_SESSION_ID_CONTEXT = b"azure-iot-harness"

TLS_VERSIONS = {"TLSv1.2": SSL.TLS1_2_VERSION, "TLSv1.3": SSL.TLS1_3_VERSION}


def _accept_any(conn: SSL.Connection, cert: object, errno: int, depth: int, ok: int) -> bool:
    return True  # judged after the handshake, against the identity the client claims


class ServerContext:
    """One listener's TLS settings (a pyOpenSSL `Context`) and the names it was built for."""

    def __init__(self, context: SSL.Context, *, alpn: tuple[str, ...], versions: tuple[str, str]) -> None:
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
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
        key = serialization.load_pem_private_key(key_pem, None)
    except ValueError as exc:
        raise ConfigError(f"cannot load the server certificate or key: {exc}") from exc
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(TLS_VERSIONS[minimum])
    ctx.set_max_proto_version(TLS_VERSIONS[maximum])
    ctx.set_options(_OPTIONS)
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    ctx.set_cipher_list(CIPHERS)
    ctx.set_session_id(_SESSION_ID_CONTEXT)
    ctx.use_certificate(certs[0])
    for extra in certs[1:]:
        ctx.add_extra_chain_cert(extra)
    ctx.use_privatekey(key)  # type: ignore[arg-type]  # any key type load_pem_private_key returns; OpenSSL refuses the odd ones
    ctx.check_privatekey()
    ctx.set_verify(SSL.VERIFY_PEER, _accept_any)
    offered = tuple(alpn)
    if offered:
        wanted = [p.encode() for p in offered]

        def select(conn: SSL.Connection, protos: list[bytes]) -> Any:
            for proto in wanted:
                if proto in protos:
                    return proto
            return SSL.NO_OVERLAPPING_PROTOCOLS

        ctx.set_alpn_select_callback(select)
    return ServerContext(ctx, alpn=offered, versions=(minimum, maximum))
