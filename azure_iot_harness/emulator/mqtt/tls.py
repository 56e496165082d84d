"""Ask TLS clients for a certificate and accept whatever they present.

IoT Hub requests a client certificate in every handshake but decides at CONNECT, from the
device's registered authentication type, whether and how to check it: self-signed device
certificates (matched by thumbprint) must pass the handshake, and a certificate from an unknown
CA is refused with a CONNACK, not a TLS alert. Python's `ssl` can request a certificate only
together with OpenSSL's chain verification and has no verify callback, so this module installs
one on the context's `SSL_CTX` through ctypes. The certificate is checked after the handshake
by `emulator.protocol.x509`. `tests/emulator/mqtt/test_tls.py` fails if this ever stops working.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ssl

import _ssl

from ...errors import HarnessError

_SSL_VERIFY_PEER = 0x01
_VerifyCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


@_VerifyCallback
def _accept_any(preverify_ok: int, store_ctx: int) -> int:  # pragma: no cover - called by OpenSSL
    return 1


def _libssl() -> ctypes.CDLL:
    # The symbols must come from the libssl that CPython's _ssl module is linked against.
    path = getattr(_ssl, "__file__", None) or ctypes.util.find_library("ssl")
    lib = ctypes.CDLL(path)
    lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VerifyCallback]
    lib.SSL_CTX_set_verify.restype = None
    lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
    return lib


_lib = _libssl()


def request_any_client_certificate(ctx: ssl.SSLContext) -> None:
    """Make a server context request a client certificate and accept any (or none)."""
    ctx.verify_mode = ssl.CERT_OPTIONAL
    # PySSLContext starts with PyObject_HEAD followed by the SSL_CTX pointer.
    raw = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not raw or _lib.SSL_CTX_get_verify_mode(raw) != _SSL_VERIFY_PEER:
        raise HarnessError("cannot reach OpenSSL's SSL_CTX behind ssl.SSLContext on this Python build")
    _lib.SSL_CTX_set_verify(raw, _SSL_VERIFY_PEER, _accept_any)
