"""Ignores methods it does not implement (the caller waits for the timeout)."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def on_method(self, name: str, rid: str, payload: bytes) -> None:
        if name in self.s.methods:
            super().on_method(name, rid, payload)


if __name__ == "__main__":
    sys.exit(main(Device))
