"""Asks DPS again at once, whatever retry-after says."""

import sys
from typing import Any

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def wait_dps(self, client: Any, seconds: float) -> None:
        super().wait_dps(client, 0.1)


if __name__ == "__main__":
    sys.exit(main(Device))
