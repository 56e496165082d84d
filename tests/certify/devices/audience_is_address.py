"""Signs its SAS token for the address it connects to (sr = 127.0.0.1/devices/…), not the hub's
host name: the hub refuses the token."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main
from azure_iot_harness.emulator.protocol import sas


class Device(ReferenceDevice):
    def token(self) -> str | None:
        super().token()
        return sas.generate(f"{self.s.address}/devices/{self.s.device_id}", self.s.key or "", ttl=self.s.token_ttl)


if __name__ == "__main__":
    sys.exit(main(Device))
