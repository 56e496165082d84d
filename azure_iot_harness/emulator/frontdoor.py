"""The MQTT front door: IoT Hub and DPS share one listener and are told apart by the username.

`{host}/{device}[/{module}]/…` is a hub connection; `{idScope}/registrations/{id}/api-version=…`
is a DPS registration.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..errors import ConnackCode, ConnectRefused, UsernameError
from .mqtt.codec import Connect
from .mqtt.connection import MqttConnection, Session
from .protocol.topics import DpsUsername, HubUsername, parse_username


class Service(Protocol):
    async def connect(self, conn: MqttConnection, connect: Connect, username: Any) -> tuple[Session, bool]: ...


class FrontDoor:
    def __init__(self, hub: Service, dps: Service | None = None) -> None:
        self.hub = hub
        self.dps = dps

    async def connect(self, conn: MqttConnection, connect: Connect) -> tuple[Session, bool]:
        try:
            username = parse_username(connect.username)
        except UsernameError as exc:
            raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"unusable username: {exc}") from None
        if isinstance(username, DpsUsername):
            if self.dps is None:
                raise ConnectRefused(ConnackCode.SERVER_UNAVAILABLE, "the Device Provisioning Service is not supported by the emulator yet")
            return await self.dps.connect(conn, connect, username)
        assert isinstance(username, HubUsername)
        return await self.hub.connect(conn, connect, username)
