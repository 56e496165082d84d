"""Answers direct methods with a wrong $rid."""

import sys
from typing import Any

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def answer_method(self, status: int, rid: str, body: Any) -> None:
        super().answer_method(status, rid + "0", body)


if __name__ == "__main__":
    sys.exit(main(Device))
