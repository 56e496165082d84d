"""The TLS client certificate reaches the ASGI app through tls_peers (hypercorn does not pass it).

These tests read hypercorn's internals indirectly: they fail when a hypercorn upgrade changes
how its connections are served, which is why hypercorn is pinned.
"""

from __future__ import annotations

import asyncio
import http.client
import ssl
import threading

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from azure_iot_harness.certs import DevPKI, self_signed_cert
from azure_iot_harness.certs.pki import thumbprints
from azure_iot_harness.emulator.mqtt.tls import request_any_client_certificate
from azure_iot_harness.emulator.tls_peers import client_certificate
from azure_iot_harness.emulator.web import HttpsServer


async def _whoami(request: Request) -> PlainTextResponse:
    der = client_certificate(request.scope)
    return PlainTextResponse(thumbprints(der)[1] if der else "none")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pki = DevPKI.generate()
    ctx = pki.server_context()
    request_any_client_certificate(ctx)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    https = HttpsServer(Starlette(routes=[Route("/", _whoami)]), host="127.0.0.1", port=0, ssl_context=ctx)
    asyncio.run_coroutine_threadsafe(https.start(), loop).result(10)
    ca = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.write_bytes(pki.root_pem)
    yield https, ca, tmp_path_factory.mktemp("certs")
    asyncio.run_coroutine_threadsafe(https.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def _connection(server, cert=None) -> http.client.HTTPSConnection:
    https, ca, folder = server
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        certfile, keyfile = cert.write(folder)
        ctx.load_cert_chain(str(certfile), str(keyfile))
    return http.client.HTTPSConnection("localhost", https.port, context=ctx, timeout=10)


def _ask(conn: http.client.HTTPSConnection) -> str:
    conn.request("GET", "/")
    return conn.getresponse().read().decode()


def test_the_presented_certificate_reaches_the_app(server):
    cert = self_signed_cert("peer-1")
    conn = _connection(server, cert)
    try:
        assert _ask(conn) == cert.sha256_thumbprint
        assert _ask(conn) == cert.sha256_thumbprint  # and again on the kept-alive connection
    finally:
        conn.close()


def test_no_certificate_is_none(server):
    conn = _connection(server)
    try:
        assert _ask(conn) == "none"
    finally:
        conn.close()


def test_concurrent_connections_are_not_mixed_up(server):
    certs = [self_signed_cert(f"peer-{i}") for i in range(3)]
    conns = [_connection(server, c) for c in certs] + [_connection(server)]
    try:
        for _ in range(2):
            assert [_ask(c) for c in conns] == [c.sha256_thumbprint for c in certs] + ["none"]
    finally:
        for c in conns:
            c.close()
