"""Never PUBACKs cloud-to-device messages (it takes them at QoS 0, so nothing acknowledges them)."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def subscriptions(self) -> list[tuple[str, int]]:
        return [(t, 0) for t, _ in super().subscriptions()]


if __name__ == "__main__":
    sys.exit(main(Device))
