"""Reconnects at once, in a loop: no wait after a drop, no back-off."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def delay(self, attempt: int, code: int | None) -> float:
        return 0.0


if __name__ == "__main__":
    sys.exit(main(Device))
