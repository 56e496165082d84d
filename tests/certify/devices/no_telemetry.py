"""Connects but never sends telemetry."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def send_telemetry(self) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main(Device))
