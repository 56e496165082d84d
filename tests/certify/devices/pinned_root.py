"""Trusts only the root it shipped with (the first of its CA file): the hub's root rotation
locks it out."""

import ssl
import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def tls(self) -> ssl.SSLContext:
        first = open(self.s.ca_file or "").read().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
        ctx = ssl.create_default_context(cadata=first)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx


if __name__ == "__main__":
    sys.exit(main(Device))
