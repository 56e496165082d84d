"""Never GETs its twin after connecting (it only listens for desired changes)."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def on_connected(self) -> None:
        self.client.subscribe(self.subscriptions())


if __name__ == "__main__":
    sys.exit(main(Device))
