"""Loses what was in flight: a new paho session per connection, nothing resent."""

import sys
from typing import Any

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def client_for_attempt(self) -> Any:
        self.client = self.new_client()
        return self.client


if __name__ == "__main__":
    sys.exit(main(Device))
