"""The asyncio protocol under every accepted connection: TLS through memory BIOs, or plain.

asyncio's own TLS (`asyncio.sslproto`) reads through a 256 KiB buffer per connection (288 KB of
resident memory per idle device, measured) and cannot be told to keep the client's chain. Here
the socket's bytes are written into an `ssl.SSLObject` through a `MemoryBIO`, the plaintext is
read out one TLS record at a time and given to an ordinary asyncio protocol (a
`StreamReaderProtocol`) above an `AppTransport`; what that protocol writes is encrypted and
handed to the socket's transport. Nothing is buffered per connection beyond what OpenSSL holds
for a record in flight (it releases its buffers while the connection is idle) and what the
stream has not consumed yet.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import ssl
import struct
from typing import Any, Protocol

from . import openssl
from .connection import TlsConnection
from .context import ServerContext, requested_name
from .hints import ServerCertificate, client_alert, explain
from .outcome import ALERT, CLOSED, COMPLETED, FAILED, HandshakeOutcome, plaintext_outcome

log = logging.getLogger("azure_iot_harness.tls")

# Plaintext read out of OpenSSL per call: one TLS record holds at most 16 KiB, and one read
# never returns more than one record.
RECV_SIZE = 16 * 1024
# The streams' limit (asyncio's default): reading pauses while more than twice this is unread.
_STREAM_LIMIT = 64 * 1024


class Owner(Protocol):
    """What a `ServerProtocol` reports to the listener that accepted it."""

    name: str
    server_certificate: ServerCertificate | None  # for the hint when a client refuses it

    def accepted(self, conn: TlsConnection) -> None: ...
    def opened(self, conn: TlsConnection) -> None: ...
    def lost(self, conn: TlsConnection) -> None: ...
    def handshake(self, conn: TlsConnection, outcome: HandshakeOutcome) -> None: ...


class ServerProtocol(asyncio.Protocol):
    """One accepted socket: the TLS handshake (unless `context` is None), then the streams.

    `certificate` names the fault certificate `context` presents (None: the normal one), and
    `fault` the fault that chose it, for the handshake's outcome and the trace.
    """

    def __init__(
        self,
        owner: Owner,
        context: ServerContext | None,
        *,
        handshake_timeout: float,
        flush_timeout: float,
        certificate: str | None = None,
        fault: Any = None,
    ) -> None:
        self._owner = owner
        self._context = context
        self._certificate = certificate
        self._fault = fault
        self._reported = False  # the handshake's outcome went to the owner
        self._first = True  # no byte received yet
        self._handshake_timeout = handshake_timeout
        self._flush_timeout = flush_timeout
        self._loop = asyncio.get_running_loop()
        self._tcp: asyncio.Transport | None = None
        self._tls: ssl.SSLObject | None = None
        self._in = self._out = _NO_BIO
        self._chain: list[bytes] = []  # what the client sends, filled during the handshake
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
        conn.fault = self._fault
        self.connection = conn
        self._owner.accepted(conn)
        if self._context is None:
            self._open()
            return
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = self._context.context.wrap_bio(self._in, self._out, server_side=True)
        self._timer = self._loop.call_later(self._handshake_timeout, self._handshake_timed_out)

    def data_received(self, data: bytes) -> None:
        tls = self._tls
        if tls is None:
            if self._app is not None:
                self._app.data_received(data)
            return
        if self.closing:
            return
        self._in.write(data)
        records, only_data = self._records.scan(data)
        if self._app is None:
            if self._first:  # what a client sends first says whether it speaks TLS at all
                self._first = False
                plain = plaintext_outcome(data)
                if plain is not None:
                    self._report(plain)  # OpenSSL refuses the bytes next and the connection closes
            if self._handshake():
                self._read_plaintext()  # what came with the client's Finished
            return
        if not only_data:
            self._read_plaintext()
            return
        # The usual case: `records` complete application-data records, one plaintext read
        # each, nothing for OpenSSL to answer (no SSLWantReadError to raise and catch per
        # chunk), and the stream fed once.
        if records == 1:
            try:
                chunk = tls.read(RECV_SIZE)
            except ssl.SSLWantReadError:  # an empty record, which OpenSSL skips
                return
            except ssl.SSLError:
                self._read_plaintext()  # reports it
                return
            if chunk:
                self._app.data_received(chunk)
            else:
                self._read_plaintext()  # b"": not data after all
            return
        if not records:
            return  # a record still arriving
        read = tls.read
        chunks = []
        try:
            for _ in range(records):
                chunks.append(read(RECV_SIZE))
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:
            self._app.data_received(b"".join(chunks))
            self._read_plaintext()
            return
        self._app.data_received(b"".join(chunks))

    def eof_received(self) -> bool | None:
        if self._app is None:
            return False
        keep_open = self._app.eof_received()
        return keep_open if self._tls is None else False  # half-closed TLS is no use

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._tls is not None and not self._reported:
            self._report(HandshakeOutcome(CLOSED, reason=describe(exc) if exc else "closed before the handshake ended"))
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
            with openssl.capture_chain(self._chain):
                tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        except (ssl.SSLError, ValueError) as exc:
            self._handshake_failed(exc)
            return False
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        conn = self.connection
        if self._chain:
            conn.peer_chain = tuple(self._chain)
        else:  # a resumed session sends no certificate; OpenSSL kept the leaf
            leaf = tls.getpeercert(binary_form=True)
            conn.peer_chain = (leaf,) if leaf else ()
        self._chain = []
        conn.tls_version = tls.version()
        cipher = tls.cipher()
        conn.cipher = cipher[0] if cipher else None
        conn.alpn = tls.selected_alpn_protocol()
        self._report(HandshakeOutcome(COMPLETED, version=conn.tls_version, cipher=conn.cipher))
        self._open()
        return not self.closing

    def _handshake_failed(self, exc: BaseException) -> None:
        assert self.connection is not None
        alert = client_alert(exc)
        if alert is not None:
            self._report(HandshakeOutcome(ALERT, alert=alert.lower()))
        else:
            self._report(HandshakeOutcome(FAILED, reason=describe(exc)))
        if self._certificate is None:
            level, why = explain(exc, self._owner.server_certificate, describe)
        else:  # a fault: refusing it is right, and the usual hints do not apply
            why = explain(exc, None, describe)[1] + f" (it was served the '{self._certificate}' fault certificate)"
            level = logging.INFO
        log.log(level, "%s %s: TLS handshake failed: %s", self._owner.name, self.connection.peer_name, why)
        self._flush()  # the alert, so the client learns why
        self.close()

    def _handshake_timed_out(self) -> None:
        self._timer = None
        assert self.connection is not None
        log.info("%s %s: TLS handshake failed: timed out", self._owner.name, self.connection.peer_name)
        self._report(HandshakeOutcome(CLOSED, reason="the handshake timed out"))
        self.abort()

    def _report(self, outcome: HandshakeOutcome) -> None:
        """Tell the owner how the handshake ended (once), with what every outcome carries."""
        if self._reported or self.connection is None:
            return
        self._reported = True
        sni = requested_name(self._tls) if self._tls is not None else None
        outcome = dataclasses.replace(outcome, sni=sni, server_cert=self._certificate)
        self.connection.handshake = outcome
        self._owner.handshake(self.connection, outcome)

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
                chunk = tls.read(RECV_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError as exc:
                assert self.connection is not None
                log.debug("%s %s: TLS error: %s", self._owner.name, self.connection.peer_name, describe(exc))
                self._flush()
                self.abort()
                return
            if not chunk:  # close_notify: the peer is done
                self._flush()
                app.eof_received()
                self.close()
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
        if not data:
            return  # hypercorn writes empty bodies; there is no empty TLS record to send
        try:
            sent = tls.write(data)
            if sent < len(data):
                view = memoryview(data)[sent:]
                while view:
                    view = view[tls.write(view) :]
        except ssl.SSLError as exc:
            assert self.connection is not None
            log.debug("%s %s: TLS error while sending: %s", self._owner.name, self.connection.peer_name, describe(exc))
            self.abort()
            return
        tcp.write(self._out.read())

    def _flush(self) -> None:
        """Hand what OpenSSL has to send to the socket."""
        if self._out.pending and self._tcp is not None:
            self._tcp.write(self._out.read())

    def close(self) -> None:
        if self.closing or self.closed:
            return
        self.closing = True
        tls, tcp = self._tls, self._tcp
        assert tcp is not None
        if tls is not None and self._app is not None:
            try:
                tls.unwrap()  # queue close_notify; the peer's is not waited for
            except (ssl.SSLError, ValueError):
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

    def reset(self) -> None:
        """Abort with SO_LINGER 0: the kernel sends a TCP RST instead of a FIN."""
        sock = self._tcp.get_extra_info("socket") if self._tcp is not None else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.abort()

    def extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":  # hypercorn asks it for the ALPN protocol
            return self._tls if self._tls is not None else default
        if name == "sslcontext":  # StreamReaderProtocol: no half-closed TLS connections
            return self._context.context if self._context is not None else default
        if name == "tls_connection":
            return self.connection
        assert self._tcp is not None
        return self._tcp.get_extra_info(name, default)


_NO_BIO = ssl.MemoryBIO()  # until a TLS connection has its own (never written to)


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
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{exc.reason} ({exc.library})" if exc.library else str(exc.reason)
    return str(exc) or type(exc).__name__


def _address(info: Any) -> tuple[str, int]:
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return ("", 0)
