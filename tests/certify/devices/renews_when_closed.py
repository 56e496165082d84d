"""Never renews its SAS token ahead of expiry: it keeps each connection until the hub closes it
at the token's expiry, then reconnects with a fresh token."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    def token(self) -> str | None:
        token = super().token()
        self.token_expires = 0.0  # so the connection is never closed to renew it
        return token


if __name__ == "__main__":
    sys.exit(main(Device))
