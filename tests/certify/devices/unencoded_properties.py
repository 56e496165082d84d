"""Puts property values into the topic without percent-encoding them."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def telemetry_topic(self) -> str:
        return f"devices/{self.s.device_id}/messages/events/site=hall 2&$.ct=application/json"


if __name__ == "__main__":
    sys.exit(main(Device))
