"""Publishes telemetry at QoS 2."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def telemetry_qos(self) -> int:
        return 2


if __name__ == "__main__":
    sys.exit(main(Device))
