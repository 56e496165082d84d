"""Speaks TLS 1.1 at most."""

import ssl
import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def tls(self) -> ssl.SSLContext:
        ctx = super().tls()
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        return ctx


if __name__ == "__main__":
    sys.exit(main(Device))
