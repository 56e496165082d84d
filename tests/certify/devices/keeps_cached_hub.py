"""Provisions again when its hub refuses it, but keeps connecting to the hub it had cached, not
the one DPS assigned this time."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    cached: tuple[str, str] | None = None

    def provision(self) -> None:
        super().provision()
        if self.cached is None:
            self.cached = (self.s.host, self.s.address)
        self.s.host, self.s.address = self.cached


if __name__ == "__main__":
    sys.exit(main(Device))
