"""Retries DPS after a 5xx at a constant interval (1.2 s)."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def delay(self, attempt: int, code: int | None) -> float:
        return 1.2


if __name__ == "__main__":
    sys.exit(main(Device))
