"""Never renews its SAS token: one token, made at start, for every connection."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    _token: str | None = None

    def token(self) -> str | None:
        if self._token is None:
            self._token = super().token()
        self.token_expires = 0.0  # and so never reconnects to renew it
        return self._token


if __name__ == "__main__":
    sys.exit(main(Device))
