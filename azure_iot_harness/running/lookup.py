"""`RunningEmulator`: the emulator running with a data folder, as a client program finds it —
its endpoints file read on first use (so that programs given every value never need one), its
identities, and device certificates from its development PKI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .endpoints import connect_host, data_dir, read_endpoints
from .errors import CommandError
from .service import get_identity


class RunningEmulator:
    def __init__(self, data_dir: str | os.PathLike[str] | None, instead: str = "--host (and credentials)") -> None:
        self._data_dir = data_dir  # the --data-dir flag, None when not given
        self._instead = instead  # what to give instead of a running emulator, for the error message
        self._info: dict[str, Any] | None = None

    @property
    def info(self) -> dict[str, Any]:
        """The endpoints file; CommandError naming what to give instead when there is none."""
        if self._info is None:
            try:
                self._info = read_endpoints(data_dir(self._data_dir))
            except CommandError as exc:
                raise CommandError(f"{exc}; or give {self._instead} to use another one") from None
        return self._info

    @property
    def address(self) -> str:
        """Where to connect: the bind address, which the server certificate covers."""
        return connect_host(self.info)

    @property
    def data_dir(self) -> Path:
        return Path(self.info["dataDir"])

    def identity(self, device_id: str) -> dict[str, Any]:
        """The registry entry of a device: well-known ones from the endpoints file, others over REST."""
        for dev in self.info.get("wellKnownIdentities", {}).get("devices", []):
            if dev.get("deviceId") == device_id:
                if dev.get("authentication") == "sas":
                    return {"authentication": {"type": "sas", "symmetricKey": dev}}
                return {"authentication": {"type": dev.get("authentication")}}
        return get_identity(self.info, device_id, None)

    def issue_cert(self, common_name: str, folder: Path) -> tuple[str, str]:
        """A certificate from the data folder's device CA (trusted for certificateAuthority
        devices and the X.509 enrollment group), written into `folder`."""
        from ..certs import DevPKI

        # The names serve already uses, so that its server certificate is never issued again.
        pki = DevPKI.load_or_create(self.data_dir / "pki", [self.info["hubHostName"], self.info.get("bind") or ""])
        cert, key = pki.issue_device_cert(common_name).write(folder)
        return str(cert), str(key)
