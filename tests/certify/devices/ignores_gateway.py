"""Ignores GatewayHostName: connects to the hub's host name (HostName) on 8883, never to the
edge gateway it was told to use."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def connect_once(self) -> int | None:
        self.s.address, self.s.port = self.s.host, 8883
        return super().connect_once()


if __name__ == "__main__":
    sys.exit(main(Device))
