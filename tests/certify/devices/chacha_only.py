"""Offers only ChaCha20-Poly1305, a cipher suite IoT Hub does not accept."""

import ssl
import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def tls(self) -> ssl.SSLContext:
        ctx = super().tls()
        ctx.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
        return ctx


if __name__ == "__main__":
    sys.exit(main(Device))
