"""Makes SAS tokens valid for ten years: a leaked token would work for a decade."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def token(self) -> str | None:
        self.s.token_ttl = 10 * 365 * 24 * 3600
        return super().token()


if __name__ == "__main__":
    sys.exit(main(Device))
