"""The asyncio protocol under every accepted connection: TLS through pyOpenSSL memory BIOs, or plain.

asyncio's own TLS (`asyncio.sslproto`) reads through a 256 KiB buffer per connection (288 KB of
resident memory per idle device, measured), cannot accept a client certificate it does not
trust and does not hand out the chain the client sent. Here the socket's bytes are written into
OpenSSL through a memory BIO, the plaintext is read out in chunks of at most `RECV_SIZE` and
given to an ordinary asyncio protocol (a `StreamReaderProtocol`) above an `AppTransport`; what
that protocol writes is encrypted and handed to the socket's transport. Nothing is buffered per
connection beyond what OpenSSL holds for a record in flight (its buffers are released while the
connection is idle) and what the stream has not consumed yet.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Protocol

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from .connection import TlsConnection
from .context import ServerContext
from .hints import ServerCertificate, explain

log = logging.getLogger("azure_iot_harness.tls")

# Plaintext read out of OpenSSL per call: one TLS record holds at most 16 KiB, and one read
# never returns more than one record.
RECV_SIZE = 16 * 1024
# Encrypted bytes taken out of OpenSSL per call (a write larger than this takes several).
_OUT_SIZE = 64 * 1024
# The most a TLS 1.2 record adds to its plaintext (header 5, IV 16, MAC 48, padding 16; AES-GCM
# adds 29).
_RECORD_OVERHEAD = 85
# The streams' limit (asyncio's default): reading pauses while more than twice this is unread.
_STREAM_LIMIT = 64 * 1024


class Owner(Protocol):
    """What a `ServerProtocol` reports to the listener that accepted it."""

    name: str
    server_certificate: ServerCertificate | None  # for the hint when a client refuses it

    def accepted(self, conn: TlsConnection) -> None: ...
    def opened(self, conn: TlsConnection) -> None: ...
    def lost(self, conn: TlsConnection) -> None: ...


class ServerProtocol(asyncio.Protocol):
    """One accepted socket: the TLS handshake (unless `context` is None), then the streams."""

    def __init__(self, owner: Owner, context: ServerContext | None, *, handshake_timeout: float, flush_timeout: float) -> None:
        self._owner = owner
        self._context = context
        self._handshake_timeout = handshake_timeout
        self._flush_timeout = flush_timeout
        self._loop = asyncio.get_running_loop()
        self._tcp: asyncio.Transport | None = None
        self._tls: SSL.Connection | None = None
        self._app: asyncio.StreamReaderProtocol | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._records = RecordScanner()
        self.connection: TlsConnection | None = None
        self.closing = False
        self.closed = False
        self.lost: asyncio.Future[None] = self._loop.create_future()

    # ---- from the socket's transport ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._tcp = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = TlsConnection(self, _address(transport.get_extra_info("peername")), _address(transport.get_extra_info("sockname")))
        self.connection = conn
        self._owner.accepted(conn)
        if self._context is None:
            self._open()
            return
        self._tls = SSL.Connection(self._context.context, None)
        self._tls.set_accept_state()
        self._timer = self._loop.call_later(self._handshake_timeout, self._handshake_timed_out)

    def data_received(self, data: bytes) -> None:
        tls = self._tls
        if tls is None:
            if self._app is not None:
                self._app.data_received(data)
            return
        if self.closing:
            return
        tls.bio_write(data)
        records, only_data = self._records.scan(data)
        if self._app is None:
            if self._handshake():
                self._read_plaintext()  # what came with the client's Finished
            return
        if not only_data:
            self._read_plaintext()
            return
        # The usual case: `records` complete application-data records, one plaintext read
        # each, nothing for OpenSSL to answer (no WantReadError to raise and catch per chunk),
        # and the stream fed once.
        if records == 1:
            try:
                self._app.data_received(tls.recv(RECV_SIZE))
            except SSL.WantReadError:  # an empty record, which OpenSSL skips
                pass
            except SSL.Error:
                self._read_plaintext()  # reports it
            return
        if not records:
            return  # a record still arriving
        recv = tls.recv
        chunks = []
        try:
            for _ in range(records):
                chunks.append(recv(RECV_SIZE))
        except SSL.WantReadError:
            pass
        except SSL.Error:
            self._app.data_received(b"".join(chunks))
            self._read_plaintext()
            return
        if chunks:
            self._app.data_received(b"".join(chunks))

    def eof_received(self) -> bool | None:
        if self._app is None:
            return False
        keep_open = self._app.eof_received()
        return keep_open if self._tls is None else False  # half-closed TLS is no use

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._app is not None:
            self._app.connection_lost(exc)
        if self.connection is not None:
            self._owner.lost(self.connection)
        if not self.lost.done():
            self.lost.set_result(None)
        self._tls = None

    def pause_writing(self) -> None:
        if self._app is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app is not None:
            self._app.resume_writing()

    # ---- the handshake ------------------------------------------------------------------

    def _handshake(self) -> bool:
        tls = self._tls
        assert tls is not None and self.connection is not None
        try:
            tls.do_handshake()
        except SSL.WantReadError:
            self._flush()
            return False
        except SSL.Error as exc:
            self._handshake_failed(exc)
            return False
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        conn = self.connection
        leaf = tls.get_peer_certificate(as_cryptography=True)
        if leaf is not None:
            # On the server side OpenSSL keeps the client's own certificate apart from the rest.
            rest = tls.get_peer_cert_chain(as_cryptography=True) or []
            conn.peer_chain = tuple(c.public_bytes(Encoding.DER) for c in (leaf, *rest))
        conn.tls_version = tls.get_protocol_version_name()
        conn.cipher = tls.get_cipher_name()
        alpn = tls.get_alpn_proto_negotiated()
        conn.alpn = alpn.decode() if alpn else None
        self._open()
        return not self.closing

    def _handshake_failed(self, exc: SSL.Error) -> None:
        assert self.connection is not None
        level, why = explain(exc, self._owner.server_certificate, describe)
        log.log(level, "%s %s: TLS handshake failed: %s", self._owner.name, self.connection.peer_name, why)
        self._flush()  # the alert, so the client learns why
        self.close()

    def _handshake_timed_out(self) -> None:
        self._timer = None
        assert self.connection is not None
        log.info("%s %s: TLS handshake failed: timed out", self._owner.name, self.connection.peer_name)
        self.abort()

    # ---- the application's side ---------------------------------------------------------

    def _open(self) -> None:
        conn = self.connection
        assert conn is not None
        reader = asyncio.StreamReader(limit=_STREAM_LIMIT, loop=self._loop)
        app = asyncio.StreamReaderProtocol(reader, loop=self._loop)
        transport = AppTransport(self)
        app.connection_made(transport)
        conn.reader = reader
        conn.writer = asyncio.StreamWriter(transport, app, reader, self._loop)
        self._app = app
        self._owner.opened(conn)

    def _read_plaintext(self) -> None:
        """Read until OpenSSL needs more bytes, then send whatever it answered by itself."""
        tls, app = self._tls, self._app
        assert tls is not None and app is not None
        while True:
            try:
                chunk = tls.recv(RECV_SIZE)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:  # close_notify: the peer is done
                self._flush()
                app.eof_received()
                self.close()
                return
            except SSL.Error as exc:
                assert self.connection is not None
                log.debug("%s %s: TLS error: %s", self._owner.name, self.connection.peer_name, describe(exc))
                self._flush()
                self.abort()
                return
            app.data_received(chunk)
            if self.closing:
                return
        self._flush()  # anything OpenSSL answers by itself (alerts, a renegotiation refusal)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing or self.closed:
            return
        tcp, tls = self._tcp, self._tls
        assert tcp is not None
        if tls is None:
            tcp.write(data)
            return
        size = len(data)
        try:
            if size <= RECV_SIZE:
                if not size:
                    return  # SSL_write refuses nothing
                tls.send(data)
            else:
                view = memoryview(data)
                while view:
                    view = view[tls.send(view) :]  # one record per call (pyOpenSSL sets partial writes)
        except SSL.Error as exc:
            assert self.connection is not None
            log.debug("%s %s: TLS error while sending: %s", self._owner.name, self.connection.peer_name, describe(exc))
            self.abort()
            return
        # Every record grows by at most 5 + 16 + 48 + 16 bytes (header, IV, MAC, padding).
        self._flush(size + (size // RECV_SIZE + 1) * _RECORD_OVERHEAD)

    def _flush(self, expected: int = _OUT_SIZE) -> None:
        """Hand what OpenSSL has to send to the socket."""
        tls, tcp = self._tls, self._tcp
        if tls is None or tcp is None:
            return
        while True:
            try:
                data = tls.bio_read(expected)
            except SSL.WantReadError:
                return
            tcp.write(data)
            if len(data) < expected:
                return
            expected = _OUT_SIZE

    def close(self) -> None:
        if self.closing or self.closed:
            return
        self.closing = True
        tls, tcp = self._tls, self._tcp
        assert tcp is not None
        if tls is not None and self._app is not None:
            try:
                tls.shutdown()  # queue close_notify; the peer's is not waited for
            except SSL.Error:
                pass
            self._flush()
        tcp.close()  # after what is buffered has gone out
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(self._flush_timeout, self.abort)

    def abort(self) -> None:
        self.closing = True
        if self._tcp is not None:
            self._tcp.abort()

    def extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":  # servers ask it for the ALPN protocol and the version
            return self.connection if self._tls is not None else default
        if name == "sslcontext":  # StreamReaderProtocol: no half-closed TLS connections
            return self._context if self._tls is not None else default
        if name == "tls_connection":
            return self.connection
        assert self._tcp is not None
        return self._tcp.get_extra_info(name, default)


class RecordScanner:
    """Follows the TLS record framing of what a client sends (RFC 5246 6.2.1: type, version,
    16-bit length): how many records each chunk completes, and whether all of them carry
    application data. Then the plaintext is read with exactly one call per record and nothing
    is asked of OpenSSL that is not there."""

    APPLICATION_DATA = 23

    def __init__(self) -> None:
        self._head = b""  # a record header split across chunks
        self._left = 0  # bytes of the current record's body still to come
        self._type = 0  # the current record's content type

    def scan(self, data: bytes) -> tuple[int, bool]:
        """(records completed by `data`, True if every one of them is application data)."""
        n = len(data)
        pos = complete = 0
        only_data = True
        if self._left:
            pos = min(self._left, n)
            self._left -= pos
            if self._left:
                return 0, True
            complete = 1
            only_data = self._type == self.APPLICATION_DATA
        while pos < n:
            if self._head or n - pos < 5:
                piece = data[pos : pos + 5 - len(self._head)]
                pos += len(piece)
                self._head += piece
                if len(self._head) < 5:
                    break
                head, self._head = self._head, b""
                kind, length = head[0], head[3] << 8 | head[4]
            else:
                kind, length = data[pos], data[pos + 3] << 8 | data[pos + 4]
                pos += 5
            if kind != self.APPLICATION_DATA:
                only_data = False
            if pos + length <= n:
                pos += length
                complete += 1
            else:
                self._left = pos + length - n
                self._type = kind
                break
        return complete, only_data


class AppTransport(asyncio.Transport):
    """The transport the application's protocol writes to: plaintext in, TLS records out."""

    def __init__(self, protocol: ServerProtocol) -> None:
        super().__init__()
        self._protocol = protocol
        assert protocol._tcp is not None
        self._tcp = protocol._tcp
        self.write = protocol.write  # type: ignore[method-assign]  # the hot path: one call less

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._protocol.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._protocol.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return self._protocol._tls is None and self._tcp.can_write_eof()

    def write_eof(self) -> None:
        if not self.can_write_eof():
            raise NotImplementedError("a TLS connection is closed with close(), not half-closed")
        self._tcp.write_eof()

    def close(self) -> None:
        self._protocol.close()

    def abort(self) -> None:
        self._protocol.abort()

    def is_closing(self) -> bool:
        return self._protocol.closing or self._protocol.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._protocol.extra_info(name, default)

    def pause_reading(self) -> None:
        self._tcp.pause_reading()

    def resume_reading(self) -> None:
        self._tcp.resume_reading()

    def is_reading(self) -> bool:
        return self._tcp.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._tcp.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._tcp.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._tcp.set_write_buffer_limits(high, low)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        raise NotImplementedError("the application protocol is fixed when the connection opens")

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol._app is not None
        return self._protocol._app


def describe(exc: BaseException) -> str:
    """A short reason for a failed TLS operation, for log lines."""
    if isinstance(exc, SSL.SysCallError):
        return "connection closed by the client"
    if isinstance(exc, SSL.Error) and exc.args and isinstance(exc.args[0], list):
        reasons = [str(e[2]) for e in exc.args[0] if isinstance(e, tuple) and len(e) == 3]
        if reasons:
            return "; ".join(reasons)
    return str(exc) or type(exc).__name__


def _address(info: Any) -> tuple[str, int]:
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return ("", 0)
