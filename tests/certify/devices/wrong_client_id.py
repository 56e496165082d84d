"""Connects with a client id that is not its device id."""

import sys
from typing import Any

from azure_iot_harness.clients.link import paho_client
from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def new_client(self) -> Any:
        client = paho_client("sensor-" + self.s.device_id, clean_session=False)
        client.tls_set_context(self.tls())
        client.on_connect, client.on_disconnect, client.on_message = self._on_connect, self._on_disconnect, self._on_message
        return client


if __name__ == "__main__":
    sys.exit(main(Device))
