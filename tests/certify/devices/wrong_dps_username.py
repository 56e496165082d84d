"""Registers with DPS under a username without api-version (an old tutorial's form)."""

import sys

from azure_iot_harness.clients import reference_device
from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def provision(self) -> None:
        reference_device.DPS_API_VERSION = ""  # the username ends in api-version= with nothing after it
        super().provision()



if __name__ == "__main__":
    sys.exit(main(Device))
