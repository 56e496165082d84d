"""Accepts any server certificate: no chain check, no host name check."""

import ssl
import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def tls(self) -> ssl.SSLContext:
        # The misbehaviour under test: verification off (never do this in a real device).
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx


if __name__ == "__main__":
    sys.exit(main(Device))
