"""`TlsConnection`: one accepted connection — its peer, what the peer presented, its streams."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from cryptography import x509

from .outcome import HandshakeOutcome

if TYPE_CHECKING:
    from .transport import ServerProtocol


class TlsConnection:
    """What the services see of one connection (TLS or, on a plain listener, TCP).

    `peer_chain` holds every certificate the client sent, leaf first, as DER, exactly as sent:
    none of them is verified by the TLS layer (see `context`). `reader`/`writer` are ordinary
    asyncio streams over the decrypted bytes.
    """

    def __init__(self, protocol: ServerProtocol, peer: tuple[str, int], local: tuple[str, int]) -> None:
        self._protocol = protocol
        self.peer = peer
        self.local = local
        self.peer_chain: tuple[bytes, ...] = ()
        self.tls_version: str | None = None
        self.cipher: str | None = None
        self.alpn: str | None = None
        self.fault: Any = None  # the fault (a FaultBook `Fault`) that chose this connection's TLS settings
        self.handshake: HandshakeOutcome | None = None  # how the TLS handshake ended (None: plain TCP, or still running)
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    @property
    def peer_cert(self) -> bytes | None:
        """The client's own certificate (DER), or None when it sent none."""
        return self.peer_chain[0] if self.peer_chain else None

    def peer_certificates(self) -> list[x509.Certificate]:
        """`peer_chain` parsed, leaf first."""
        return [x509.load_der_x509_certificate(der) for der in self.peer_chain]

    @property
    def peer_name(self) -> str:
        """`host:port` (`[host]:port` for IPv6), for log lines."""
        host, port = self.peer
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def closed(self) -> bool:
        return self._protocol.closed

    def close(self) -> None:
        """Send what is queued, then close_notify, then close the socket without waiting for the
        peer's close_notify; abort if the peer does not take the data within the flush timeout."""
        self._protocol.close()

    def abort(self) -> None:
        """Close the socket now, dropping what is not sent."""
        self._protocol.abort()

    def reset(self) -> None:
        """Close with a TCP reset (RST), as a crashed server or a middlebox does (drop faults)."""
        self._protocol.reset()

    async def wait_closed(self) -> None:
        await self._protocol.lost
