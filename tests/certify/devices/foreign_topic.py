"""Publishes a status message to a topic of its own (as to a plain broker)."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def send_telemetry(self) -> None:
        super().send_telemetry()
        self.client.publish(f"devices/{self.s.device_id}/status", b"online", qos=1)


if __name__ == "__main__":
    sys.exit(main(Device))
