"""Drops a twin request that was answered 429 instead of retrying it."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def on_twin_answer(self, status: int, rid: str, payload: bytes) -> None:
        if status == 429:
            self.pending_twin.pop(rid, None)
            return
        super().on_twin_answer(status, rid, payload)


if __name__ == "__main__":
    sys.exit(main(Device))
