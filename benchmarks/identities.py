"""Device identities shared by every server, so each one sees the same client ids, usernames,
passwords (SAS tokens) and topics: the emulator checks the tokens, mosquitto through its
password file, the amqtt Broker lets anyone in."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import cache

from azure_iot_harness.emulator.protocol import sas

HOST = "localhost"
API = "api-version=2021-04-12"
TOKEN_TTL = 24 * 3600


@dataclass(frozen=True)
class Identity:
    device_id: str
    key: str
    password: str

    @property
    def client_id(self) -> str:
        return self.device_id

    @property
    def username(self) -> str:
        return f"{HOST}/{self.device_id}/?{API}"

    @property
    def topic(self) -> str:
        return f"devices/{self.device_id}/messages/events/"

    def registry_doc(self) -> dict:
        return {
            "deviceId": self.device_id,
            "authentication": {"type": "sas", "symmetricKey": {"primaryKey": self.key, "secondaryKey": self.key}},
        }


@cache
def identity(i: int | str) -> Identity:
    device_id = f"bench-{i}"
    key = base64.b64encode(hashlib.sha256(device_id.encode()).digest()).decode()
    return Identity(device_id, key, sas.generate(f"{HOST}/devices/{device_id}", key, ttl=TOKEN_TTL))


def identities(n: int) -> list[Identity]:
    return [identity(i) for i in range(n)]


# The brokers' one subscriber (the emulator stores instead of delivering).
SUBSCRIBER = "sub"
