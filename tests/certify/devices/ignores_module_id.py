"""An edge module that ignores ModuleId: it connects with its module key but as the device
(client id, username and token name the edge device only); the gateway refuses it."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def identity_path(self) -> str:
        return self.s.device_id

    def client_id(self) -> str:
        return self.s.device_id


if __name__ == "__main__":
    sys.exit(main(Device))
