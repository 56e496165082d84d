"""Backs off linearly (1.5 s more each time), not exponentially."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def delay(self, attempt: int, code: int | None) -> float:
        return 1.5 * attempt


if __name__ == "__main__":
    sys.exit(main(Device))
