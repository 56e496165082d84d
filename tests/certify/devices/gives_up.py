"""Never reconnects once the connection is lost (the process stays up)."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def delay(self, attempt: int, code: int | None) -> float:
        return 1e9 if self.seq else super().delay(attempt, code)


if __name__ == "__main__":
    sys.exit(main(Device))
