"""The TLS adapter on its own: settings, buffers, streams, chains, the lookup by peer, timeouts."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import trustme

from azure_iot_harness.emulator.tls import (
    TlsConnection,
    TlsListener,
    openssl,
    server_context,
    transport,
)
from azure_iot_harness.emulator.tls.transport import RecordScanner
from tests.helpers import wait_for


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def _call(loop: asyncio.AbstractEventLoop, coro: Awaitable[Any]) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(10)  # type: ignore[arg-type]


def _listen(loop, ca: trustme.CA | None, handler: Callable[[TlsConnection], Awaitable[None]], **kw: Any) -> TlsListener:
    context = None
    if ca is not None:
        leaf = ca.issue_cert("localhost", "127.0.0.1")
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        context = server_context(chain, leaf.private_key_pem.bytes())

    async def start() -> TlsListener:
        listener = TlsListener(name="test", host="127.0.0.1", port=0, context=context, handler=handler, **kw)
        await listener.start()
        return listener

    return _call(loop, start())


def _client(ca: trustme.CA, port: int, **wrap: Any) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost", **wrap)


async def _echo(conn: TlsConnection) -> None:
    while data := await conn.reader.read(65536):
        conn.writer.write(data)
        await conn.writer.drain()


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, f"closed after {len(out)} of {n} bytes"
        out += chunk
    return out


def test_python_s_server_settings_with_tls_1_2_only(ca):
    leaf = ca.issue_cert("localhost")
    ctx = server_context(b"".join(b.bytes() for b in leaf.cert_chain_pems), leaf.private_key_pem.bytes())
    default = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert [c["name"] for c in ctx.context.get_ciphers()] == [c["name"] for c in default.get_ciphers()]
    assert ctx.context.options == default.options | ssl.OP_NO_TICKET  # no resumption: see test_resumption
    assert ctx.context.minimum_version == ctx.context.maximum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.context.verify_mode == ssl.CERT_OPTIONAL  # asks every client; the callback accepts any
    assert ctx.versions == ("TLSv1.2", "TLSv1.2")


def test_the_openssl_self_test_passes_here():
    openssl.check()  # what server_context runs before touching OpenSSL: accept any, keep the chain


def test_tls_1_3_only_clients_are_refused(loop, ca):
    listener = _listen(loop, ca, _echo)
    try:
        ctx = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as raw:
            with pytest.raises(ssl.SSLError):
                ctx.wrap_socket(raw, server_hostname="localhost")
    finally:
        _call(loop, listener.stop())


def test_the_read_buffer_is_small_and_large_messages_still_pass(loop, ca):
    # One plaintext read takes at most one TLS record (16 KiB); nothing larger is kept per
    # connection (asyncio's own TLS keeps 256 KiB). A 300 KB message crosses many records.
    assert transport.RECV_SIZE == 16 * 1024
    listener = _listen(loop, ca, _echo)
    try:
        with _client(ca, listener.port) as sock:
            message = bytes(range(256)) * 1200
            sock.sendall(message)
            assert _recv_exactly(sock, len(message)) == message
    finally:
        _call(loop, listener.stop())


def _recording_echo(seen: list[TlsConnection]) -> Callable[[TlsConnection], Awaitable[None]]:
    async def handler(conn: TlsConnection) -> None:
        seen.append(conn)
        await _echo(conn)

    return handler


def test_connections_are_found_by_peer_until_they_close(loop, ca):
    seen: list[TlsConnection] = []
    listener = _listen(loop, ca, _recording_echo(seen))
    try:
        sock = _client(ca, listener.port)
        sock.sendall(b"ping")
        assert _recv_exactly(sock, 4) == b"ping"
        peer = sock.getsockname()
        conn = listener.connection(peer)
        assert conn is seen[0] and conn.peer == peer[:2] and conn.tls_version == "TLSv1.2"
        assert conn.peer_chain == () and conn.peer_cert is None
        assert listener.connection(list(peer)) is conn  # an ASGI scope's client is a list
        sock.close()
        assert wait_for(lambda: listener.connection(peer) is None and listener.connections == [])
    finally:
        _call(loop, listener.stop())


def _chain_recorder(chains: list[tuple[bytes, ...]]) -> Callable[[TlsConnection], Awaitable[None]]:
    """A handler that keeps each connection's peer_chain and answers b"ok"."""

    async def handler(conn: TlsConnection) -> None:
        chains.append(conn.peer_chain)
        assert conn.peer_certificates()[0].subject.rfc4514_string().startswith("CN=chain-device")
        conn.writer.write(b"ok")
        await conn.writer.drain()

    return handler


def test_the_client_chain_and_its_parsed_form(loop, ca, chain_files):
    chains: list[tuple[bytes, ...]] = []
    listener = _listen(loop, ca, _chain_recorder(chains))
    try:
        ctx = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())
        ctx.load_cert_chain(str(chain_files.certfile), str(chain_files.keyfile))
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", listener.port), timeout=10), server_hostname="localhost") as sock:
            assert _recv_exactly(sock, 2) == b"ok"
        assert chains == [chain_files.ders]
    finally:
        _call(loop, listener.stop())


def test_plain_listeners_have_no_tls(loop):
    conns: list[TlsConnection] = []
    listener = _listen(loop, None, _recording_echo(conns))
    try:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
            sock.sendall(b"plain")
            assert _recv_exactly(sock, 5) == b"plain"
        assert conns[0].tls_version is None and conns[0].peer_chain == ()
    finally:
        _call(loop, listener.stop())


def test_a_silent_client_is_dropped_after_the_handshake_timeout(loop, ca, caplog):
    caplog.set_level(logging.INFO, "azure_iot_harness.tls")
    listener = _listen(loop, ca, _echo, handshake_timeout=0.2)
    try:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
            assert sock.recv(1) == b""  # closed by the server, nothing sent
        assert wait_for(lambda: any("TLS handshake failed: timed out" in r.getMessage() for r in caplog.records))
    finally:
        _call(loop, listener.stop())


def test_the_client_closing_ends_the_stream(loop, ca):
    ended = threading.Event()

    async def handler(conn: TlsConnection) -> None:
        await _echo(conn)
        ended.set()

    listener = _listen(loop, ca, handler)
    try:
        sock = _client(ca, listener.port)
        sock = sock.unwrap()  # close_notify, then TCP stays open: the server must see the end
        assert ended.wait(10)
        sock.close()
    finally:
        _call(loop, listener.stop())


def test_stop_closes_every_connection(loop, ca):
    listener = _listen(loop, ca, _echo)
    socks = [_client(ca, listener.port, suppress_ragged_eofs=False) for _ in range(3)]
    for sock in socks:
        sock.sendall(b"x")
        assert _recv_exactly(sock, 1) == b"x"
    _call(loop, listener.stop(grace=0))
    for sock in socks:
        with pytest.raises((ConnectionResetError, ssl.SSLEOFError)):
            while sock.recv(1):
                pass
        sock.close()
    assert not listener.running


@pytest.mark.parametrize("cut", [1, 3, 5, 6, 7, 260])
def test_the_record_scanner_counts_records_across_any_split(cut):
    # Three records: application data (250 bytes), an alert (2), application data (0).
    records = [bytes([23, 3, 3, 0, 250]) + b"a" * 250, bytes([21, 3, 3, 0, 2]) + b"\x01\x00", bytes([23, 3, 3, 0, 0])]
    stream = b"".join(records)
    scanner = RecordScanner()
    first = scanner.scan(stream[:cut])
    second = scanner.scan(stream[cut:])
    assert first[0] + second[0] == 3
    assert (first[1] and second[1]) is False  # the alert is seen by whichever chunk completes it
    only_data = RecordScanner()
    assert only_data.scan(records[0] * 4) == (4, True)


def test_other_contexts_in_the_process_still_verify(ca, tmp_path):
    # The accept-any callback sits on the adapter's own contexts only.
    leaf = ca.issue_cert("localhost")
    server_context(b"".join(b.bytes() for b in leaf.cert_chain_pems), leaf.private_key_pem.bytes())
    leaf.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    strict = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    strict.load_cert_chain(str(tmp_path / "server.pem"))
    strict.verify_mode = ssl.CERT_REQUIRED
    strict.load_verify_locations(cadata=ca.cert_pem.bytes().decode())
    stranger = trustme.CA().issue_cert("stranger")
    stranger.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
    client_ctx = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())
    client_ctx.load_cert_chain(str(tmp_path / "client.pem"))
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = strict.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    with pytest.raises(ssl.SSLCertVerificationError):
        for _ in range(10):
            for obj, out, peer_in in ((client, c_out, s_in), (server, s_out, c_in)):
                try:
                    obj.do_handshake()
                except ssl.SSLWantReadError:
                    pass
                peer_in.write(out.read())


def test_a_client_that_tries_to_resume_its_session_sends_its_whole_chain_again(loop, ca, chain_files):
    """A resumed TLS 1.2 session (ticket or session id) carries no certificates, and OpenSSL keeps
    only the leaf of the first handshake: the server contexts resume nothing, so every connection's
    peer_chain is the full chain the client sent."""
    chains: list[tuple[bytes, ...]] = []
    listener = _listen(loop, ca, _chain_recorder(chains))
    try:
        ctx = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())
        ctx.load_cert_chain(str(chain_files.certfile), str(chain_files.keyfile))
        session = None
        for _ in range(2):
            raw = socket.create_connection(("127.0.0.1", listener.port), timeout=10)
            with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as sock:
                assert _recv_exactly(sock, 2) == b"ok"
                assert not sock.session_reused
                session = sock.session
        assert session is not None  # the client did offer the session it had
        assert chains == [chain_files.ders, chain_files.ders]
    finally:
        _call(loop, listener.stop())
