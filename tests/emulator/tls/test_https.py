"""HTTPS through the TLS adapter: hypercorn serves the adapter's connections, every request sees
the certificates its client sent, the connection is found by the client's address, and stop
closes idle keep-alive connections itself.

These tests drive hypercorn's per-connection server (a private API): they fail when a hypercorn
upgrade changes it, which is why hypercorn is pinned and checked at start-up.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from azure_iot_harness.certs import DevPKI, self_signed_cert
from azure_iot_harness.certs.pki import thumbprints
from azure_iot_harness.emulator.app import EmulatorThread
from azure_iot_harness.emulator.https_server import ALPN, HttpsServer
from azure_iot_harness.emulator.tls import asgi, client_chain, server_context
from azure_iot_harness.errors import HarnessError
from tests.helpers import wait_for


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _whoami_app(servers: list[HttpsServer]) -> Starlette:
    async def whoami(request: Request) -> JSONResponse:
        conn = servers[0].connection(request.scope)
        tls = request.scope["extensions"].get("tls")
        return JSONResponse(
            {
                "chain": [thumbprints(der)[1] for der in client_chain(request.scope)],
                "lookup": thumbprints(conn.peer_cert)[1] if conn is not None and conn.peer_cert else None,
                "found": conn is not None,
                "tls_version": tls and tls["tls_version"],
                "name": tls and tls["client_cert_name"],
            }
        )

    return Starlette(routes=[Route("/", whoami)])


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[HttpsServer, Any, Any, _Loop]]:
    pki = DevPKI.generate()
    loop = _Loop()
    servers: list[HttpsServer] = []
    https = HttpsServer(
        _whoami_app(servers), host="127.0.0.1", port=0, tls=server_context(pki.server_chain_pem, pki.server_key_pem, alpn=ALPN)
    )
    servers.append(https)
    loop.call(https.start())
    ca = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.write_bytes(pki.root_pem)
    yield https, ca, tmp_path_factory.mktemp("certs"), loop
    loop.call(https.stop())
    loop.close()


def _connection(server, cert=None, certfile=None, keyfile=None) -> http.client.HTTPSConnection:
    https, ca, folder, _ = server
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        certfile, keyfile = cert.write(folder)
    if certfile is not None:
        ctx.load_cert_chain(str(certfile), str(keyfile))
    return http.client.HTTPSConnection("localhost", https.port, context=ctx, timeout=10)


def _ask(conn: http.client.HTTPConnection) -> dict:
    import json

    conn.request("GET", "/")
    return json.loads(conn.getresponse().read())


def test_the_presented_certificate_reaches_the_app(server):
    cert = self_signed_cert("peer-1")
    conn = _connection(server, cert)
    try:
        first = _ask(conn)
        assert first["chain"] == [cert.sha256_thumbprint]
        assert first["lookup"] == cert.sha256_thumbprint  # the same connection, found by address
        assert first["tls_version"] == 0x0303 and first["name"] == "CN=peer-1"
        assert _ask(conn)["chain"] == [cert.sha256_thumbprint]  # and again on the kept-alive connection
    finally:
        conn.close()


def test_no_certificate_is_an_empty_chain(server):
    conn = _connection(server)
    try:
        answer = _ask(conn)
        assert answer["chain"] == [] and answer["found"] and answer["lookup"] is None and answer["name"] is None
    finally:
        conn.close()


def test_a_chain_sent_by_the_client_arrives_whole(server, chain_files):
    conn = _connection(server, certfile=chain_files.certfile, keyfile=chain_files.keyfile)
    try:
        assert _ask(conn)["chain"] == [thumbprints(der)[1] for der in chain_files.ders]
    finally:
        conn.close()


def test_concurrent_connections_are_not_mixed_up(server):
    certs = [self_signed_cert(f"peer-{i}") for i in range(3)]
    conns = [_connection(server, c) for c in certs] + [_connection(server)]
    try:
        for _ in range(2):
            assert [_ask(c)["chain"] for c in conns] == [[c.sha256_thumbprint] for c in certs] + [[]]
    finally:
        for c in conns:
            c.close()


def test_connections_leave_the_lookup_when_they_close(server):
    https, *_ = server
    conn = _connection(server)
    _ask(conn)
    peer = conn.sock.getsockname()
    assert https.listener.connection(peer) is not None
    conn.close()
    assert wait_for(lambda: https.listener.connection(peer) is None)


def test_alpn_selects_http_1_1(server):
    https, ca, _, _ = server
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", https.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"
            assert tls.version() == "TLSv1.2"


def _idle_keep_alive(port: int, ca) -> ssl.SSLSocket:
    """A raw TLS socket that sent one request, read its answer and now idles (keep-alive).
    Ragged EOFs are not suppressed: a clean close reads b"", an abort raises."""
    ctx = ssl.create_default_context(cafile=str(ca))
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost", suppress_ragged_eofs=False)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
        answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200")
    return sock


def test_stop_closes_idle_keep_alive_connections_cleanly(tmp_path):
    # hypercorn's own keep-alive timeout would hold them an hour: stop closes them itself, with
    # TLS close_notify (a clean EOF for the client, not a reset).
    pki = DevPKI.generate()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.root_pem)
    loop = _Loop()
    servers: list[HttpsServer] = []
    https = HttpsServer(_whoami_app(servers), host="127.0.0.1", port=0, tls=server_context(pki.server_chain_pem, pki.server_key_pem))
    servers.append(https)
    https.config.keep_alive_timeout = 3600
    try:
        loop.call(https.start())
        socks = [_idle_keep_alive(https.port, ca) for _ in range(3)]
        loop.call(https.stop())
        for sock in socks:
            assert sock.recv(1) == b""
            sock.close()
        assert https.listener.connections == []
    finally:
        loop.close()


def test_the_emulator_closes_idle_keep_alive_connections_at_stop():
    thread = EmulatorThread(in_memory=True, mqtt_port=0, https_port=0)
    emu = thread.start()
    ctx = ssl.create_default_context(cafile=str(emu.ca_file))
    conn = http.client.HTTPSConnection("localhost", emu.https_port, context=ctx)
    conn.request("GET", "/_emulator/health")
    assert conn.getresponse().read() == b'{"status":"ok"}'
    thread.stop()
    conn.sock.settimeout(10)
    assert conn.sock.recv(1) == b""


def test_plain_http_has_no_tls_extension():
    loop = _Loop()
    seen: list[dict] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        seen.append(dict(scope.get("extensions") or {}))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    https = HttpsServer(app, host="127.0.0.1", port=0, tls=None)
    try:
        loop.call(https.start())
        conn = http.client.HTTPConnection("127.0.0.1", https.port, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().status == 204
        conn.close()
        assert "tls" not in seen[0] and client_chain({"extensions": seen[0]}) == ()
        loop.call(https.stop())
    finally:
        loop.close()


def test_hypercorn_is_the_version_the_adapter_was_written_for(monkeypatch):
    asgi.check()  # the pinned hypercorn passes

    class Changed:
        def __init__(self, app: Any, config: Any) -> None: ...

    import hypercorn.asyncio.tcp_server

    monkeypatch.setattr(hypercorn.asyncio.tcp_server, "TCPServer", Changed)
    with pytest.raises(HarnessError, match=r"written for \(hypercorn 0\.18\.0\)"):
        asgi.check()
