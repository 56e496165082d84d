"""What Python's `ssl` cannot do on 3.11, done in OpenSSL directly: accept any client certificate
and keep the chain the client sent. The only module with ctypes; checked before first use.

Python's `ssl` requests a client certificate only together with OpenSSL's chain verification,
has no verify callback, and (before 3.13's `get_unverified_chain`) hands out the leaf only.
`accept_any_client_certificate` installs a verify callback on the `SSL_CTX` behind one
`ssl.SSLContext` (that context only: nothing else in the process changes). The callback accepts
every certificate and, while `capture_chain` is active on this thread (the adapter wraps each
`do_handshake()` call in it), copies the certificates the client sent — OpenSSL's untrusted
chain, leaf first — as DER. It runs inside `do_handshake()`, on the calling thread.

The `SSL_CTX` pointer is read from CPython's `PySSLContext` (its first field after the object
header): `check()` proves, with an in-memory handshake, that this and the callback work on the
running Python and OpenSSL, and raises HarnessError naming what this was written for otherwise.
The symbols come from the libssl/libcrypto CPython's `_ssl` module is linked against.
"""

from __future__ import annotations

import _ssl
import contextlib
import ctypes
import datetime as dt
import functools
import ssl
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ...errors import HarnessError

WRITTEN_FOR = "CPython 3.11 with OpenSSL 3.0 (tested: 3.11.7 with OpenSSL 3.0.19)"

_SSL_VERIFY_PEER = 0x01
_SSL_CTRL_SET_SESS_CACHE_MODE = 44  # SSL_CTX_set_session_cache_mode is a macro over SSL_CTX_ctrl
_SSL_SESS_CACHE_OFF = 0
_VerifyCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(_ssl.__file__)
    lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VerifyCallback]
    lib.SSL_CTX_set_verify.restype = None
    lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
    lib.X509_STORE_CTX_get0_untrusted.argtypes = [ctypes.c_void_p]
    lib.X509_STORE_CTX_get0_untrusted.restype = ctypes.c_void_p
    lib.OPENSSL_sk_num.argtypes = [ctypes.c_void_p]
    lib.OPENSSL_sk_num.restype = ctypes.c_int
    lib.OPENSSL_sk_value.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.OPENSSL_sk_value.restype = ctypes.c_void_p
    lib.i2d_X509.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.i2d_X509.restype = ctypes.c_int
    lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    lib.SSL_CTX_ctrl.restype = ctypes.c_long
    return lib


_lib: ctypes.CDLL | None = None
_sinks = threading.local()  # .chain: the list the running handshake's certificates go to


def _der(cert: int) -> bytes:
    assert _lib is not None
    size = _lib.i2d_X509(cert, None)
    if size <= 0:
        return b""
    buf = ctypes.create_string_buffer(size)
    out = ctypes.c_void_p(ctypes.addressof(buf))
    _lib.i2d_X509(cert, ctypes.byref(out))  # writes at *out and advances it
    return buf.raw


@_VerifyCallback
def _accept_and_capture(preverify_ok: int, store_ctx: int) -> int:  # pragma: no cover - called by OpenSSL
    try:
        chain = getattr(_sinks, "chain", None)
        if chain is not None and not chain and _lib is not None:
            # Called once per certificate depth; the untrusted stack is the whole chain sent.
            stack = _lib.X509_STORE_CTX_get0_untrusted(store_ctx)
            if stack:
                chain.extend(_der(_lib.OPENSSL_sk_value(stack, i)) for i in range(_lib.OPENSSL_sk_num(stack)))
    except Exception:  # an exception cannot cross into OpenSSL; the leaf is still read afterwards
        pass
    return 1  # judged after the handshake, against the identity the client claims


@contextlib.contextmanager
def capture_chain(chain: list[bytes]) -> Iterator[None]:
    """Certificates a client sends during the handshake step(s) run inside go to `chain`."""
    _sinks.chain = chain
    try:
        yield
    finally:
        _sinks.chain = None


def accept_any_client_certificate(ctx: ssl.SSLContext) -> None:
    """Make a server context request a client certificate and accept any (or none)."""
    check()
    _install(ctx)


def _install(ctx: ssl.SSLContext) -> None:
    ctx.verify_mode = ssl.CERT_OPTIONAL
    raw = _ssl_ctx(ctx)
    if _lib is None or _lib.SSL_CTX_get_verify_mode(raw) != _SSL_VERIFY_PEER:
        raise _unsupported("cannot reach the SSL_CTX behind ssl.SSLContext")
    _lib.SSL_CTX_set_verify(raw, _SSL_VERIFY_PEER, _accept_and_capture)


def disable_session_cache(ctx: ssl.SSLContext) -> None:
    """Turn off OpenSSL's server-side session cache for one context (`ssl` has no setting for it):
    with tickets off too, no session is ever resumed. Call after `accept_any_client_certificate`."""
    assert _lib is not None, "accept_any_client_certificate(ctx) first: it checks the C API"
    _lib.SSL_CTX_ctrl(_ssl_ctx(ctx), _SSL_CTRL_SET_SESS_CACHE_MODE, _SSL_SESS_CACHE_OFF, None)


def _ssl_ctx(ctx: ssl.SSLContext) -> int:
    """The `SSL_CTX *` behind an `ssl.SSLContext` (PySSLContext: PyObject_HEAD, then the pointer)."""
    global _lib
    if _lib is None:
        _lib = _load()
    raw = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not raw:
        raise _unsupported("cannot reach the SSL_CTX behind ssl.SSLContext")
    return raw


def _unsupported(what: str) -> HarnessError:
    return HarnessError(
        f"{what} on Python {sys.version.split()[0]} with {ssl.OPENSSL_VERSION}: "
        f"azure_iot_harness.emulator.tls was written for {WRITTEN_FOR}"
    )


@functools.cache
def check() -> None:
    """An in-memory handshake: a client with a certificate from an unknown issuer and a second
    certificate in its chain must pass, and both must be captured, leaf first."""
    try:
        key = ec.generate_private_key(ec.SECP256R1())  # one key for all three: only the chain matters
        server_pem, server_key = _self_signed("localhost", key)
        client_pem, client_key = _self_signed("client", key)
        extra_pem, _ = _self_signed("extra", key)
        with tempfile.TemporaryDirectory() as tmp:
            files = {name: Path(tmp) / name for name in ("s.pem", "s.key", "c.pem", "c.key")}
            for name, data in zip(files, (server_pem, server_key, client_pem + extra_pem, client_key)):
                files[name].write_bytes(data)
            server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server.load_cert_chain(files["s.pem"], files["s.key"])
            _install(server)
            client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            client.load_verify_locations(cadata=server_pem.decode())
            client.load_cert_chain(files["c.pem"], files["c.key"])
        chain = _handshake(server, client)
    except HarnessError:
        raise
    except (OSError, ssl.SSLError, AttributeError, ValueError) as exc:
        raise _unsupported(f"the TLS adapter's self-test failed ({exc})") from exc
    expected = [x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER) for pem in (client_pem, extra_pem)]
    if chain != expected:
        raise _unsupported("the TLS adapter's self-test did not capture the client's chain")


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> list[bytes]:
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    chain: list[bytes] = []
    done = [False, False]
    for _ in range(10):
        for i, (obj, out, peer_in) in enumerate(((client, c_out, s_in), (server, s_out, c_in))):
            if not done[i]:
                try:
                    with capture_chain(chain):
                        obj.do_handshake()
                    done[i] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done):
            return chain
    raise _unsupported("the TLS adapter's self-test handshake did not complete")


def _self_signed(name: str, key: ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
