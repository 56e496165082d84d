"""A TLS stack with a 4 KB input buffer (as an mbedTLS build with MBEDTLS_SSL_IN_CONTENT_LEN=4096
on a small board): a server handshake message larger than that ends the handshake. Python's ssl
has no buffer setting, so the device watches the handshake messages it receives and gives up on
one over 4 KB — the same outcome the board has (no Finished sent, no CONNECT)."""

import ssl
import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main

IN_BUFFER = 4096


class BufferOverflow(ssl.SSLError):
    pass


def _watch(conn, direction, version, content_type, msg_type, data) -> None:  # noqa: ANN001
    # _msg_callback is CPython's hook for handshake tracing (like `openssl s_client -msg`): the
    # only way to see message sizes from Python; this is a test device, not the emulator.
    if direction == "read" and len(data) > IN_BUFFER:
        raise BufferOverflow(f"handshake message of {len(data)} bytes does not fit the {IN_BUFFER}-byte input buffer")


class Device(ReferenceDevice):
    def tls(self) -> ssl.SSLContext:
        ctx = super().tls()
        ctx._msg_callback = _watch  # type: ignore[attr-defined]  # see _watch
        return ctx


if __name__ == "__main__":
    sys.exit(main(Device))
