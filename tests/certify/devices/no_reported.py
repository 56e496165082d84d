"""Never reports properties: desired changes are applied silently."""

import sys
from typing import Any

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def report(self, patch: dict[str, Any]) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main(Device))
