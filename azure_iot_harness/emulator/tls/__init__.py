"""The one TLS adapter: the server side of every TLS port (MQTT 8883, HTTPS/WebSocket 443, the
edge's listeners, later AMQP 5671).

- `server_context(chain_pem, key_pem, alpn=…)`: the server's certificate and TLS settings; it asks
  every client for a certificate and accepts any, for the services to judge (`context`).
- `TlsListener(name=, host=, port=, context=, handler=)`: accepts, runs the handshake, calls
  `handler(conn)` in a task per connection; `listener.connection(peer)` finds an open connection
  by the client's address; `OnListener`: the port properties of a server built on one
  (`listener`).
- `TlsConnection`: `peer`, `peer_cert` (leaf DER), `peer_chain` (every certificate the client
  sent, DER, leaf first), `reader`/`writer` streams, `close()` (`connection`).
- `HttpConnections`: hypercorn over those connections for an ASGI app; `client_chain(scope)` and
  `client_certificate(scope)` read a request's certificates (`asgi`).
- `HandshakeOutcome`: how each handshake ended (completed, the client's alert, closed, plaintext),
  reported to the listener's `observers` and kept on `TlsConnection.handshake` (`outcome`).
- `TlsFaults`: the `tls-certificate` and `tls-max-records` fault kinds — bad server
  certificates for the next connections, or on a port of their own (`faults`, imported by the
  emulator's assembly; it registers the kinds with the FaultBook).

Connections run on `ssl.MemoryBIO`/`SSLObject` under an asyncio protocol of this package's own
(`transport`). What Python's `ssl` lacks on 3.11 — accepting any client certificate, keeping the
chain — is done through OpenSSL's C API with ctypes (`openssl`), and hypercorn is served one
connection at a time through its per-connection server (`asgi`): both are private APIs, touched
only in this package, per context or per server (nothing process-wide), and checked before first
use with a HarnessError that names what they were written for.
"""

from .asgi import HttpConnections, client_certificate, client_chain
from .connection import TlsConnection
from .context import ServerContext, server_context
from .hints import ServerCertificate
from .listener import OnListener, Served, TlsListener
from .outcome import HandshakeOutcome

__all__ = [
    "HandshakeOutcome",
    "HttpConnections",
    "OnListener",
    "ServerCertificate",
    "ServerContext",
    "Served",
    "TlsConnection",
    "TlsListener",
    "client_certificate",
    "client_chain",
    "server_context",
]
