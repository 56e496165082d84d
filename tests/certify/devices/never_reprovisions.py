"""Keeps knocking at the hub it was assigned to once, even when the hub no longer knows it."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def reprovision_after(self, code: int | None) -> bool:
        return False


if __name__ == "__main__":
    sys.exit(main(Device))
