"""Subscribes to `#` (as a device written for a plain broker does)."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def subscriptions(self) -> list[tuple[str, int]]:
        return [("#", 1)]


if __name__ == "__main__":
    sys.exit(main(Device))
