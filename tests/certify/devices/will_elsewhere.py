"""Sets a will message on a topic of its own."""

import sys
from typing import Any

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def new_client(self) -> Any:
        client = super().new_client()
        client.will_set(f"devices/{self.s.device_id}/status", b"offline", qos=1)
        return client


if __name__ == "__main__":
    sys.exit(main(Device))
