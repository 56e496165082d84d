"""Helpers for DPS tests: credentials, enrollments, and a raw MQTT registration client."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from azure_iot_harness.certs.pki import DeviceCert
from azure_iot_harness.config import WELL_KNOWN_SYMMETRIC_GROUP_KEYS
from azure_iot_harness.emulator.app import Emulator, EmulatorThread
from azure_iot_harness.emulator.protocol import sas
from tests.helpers import RawClient, connect_packet, publish_packet, subscribe_packet

API = "api-version=2019-03-31"
REGISTER = "$dps/registrations/PUT/iotdps-register/?$rid={}"
POLL = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={}&operationId={}"


def scope(emu: Emulator) -> str:
    return emu.config.dps_id_scope


def username(emu: Emulator, rid: str, scope_: str | None = None) -> str:
    return f"{scope_ or scope(emu)}/registrations/{rid}/{API}&ClientVersion=tests"


def group_key(rid: str) -> str:
    """The device key of `rid` in the well-known symmetric-key enrollment group."""
    return sas.derive_device_key(WELL_KNOWN_SYMMETRIC_GROUP_KEYS[0], rid)


def token(emu: Emulator, rid: str, key: str, *, skn: str | None = "registration", ttl: int = 3600) -> str:
    return sas.generate(f"{scope(emu)}/registrations/{rid}", key, key_name=skn, ttl=ttl)


def individual(thread: EmulatorThread, rid: str, **extra: Any) -> dict:
    """An individual enrollment with a generated symmetric key (or the given attestation)."""
    body = {"attestation": {"type": "symmetricKey"}, **extra}
    return thread.call(thread.emulator.dps.put_enrollment("individual", rid, body, if_match=None))


def x509_individual(thread: EmulatorThread, rid: str, cert: DeviceCert, **extra: Any) -> dict:
    attestation = {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": cert.cert_pem.decode()}}}}
    return individual(thread, rid, attestation=attestation, **extra)


def decode_publish(flags: int, body: bytes) -> tuple[str, bytes]:
    (n,) = struct.unpack_from("!H", body)
    topic = body[2 : 2 + n].decode()
    rest = body[2 + n + (2 if (flags >> 1) & 3 else 0) :]
    return topic, rest


class RawDps:
    """A hand-made MQTT registration client, as a manual MQTT client does it."""

    def __init__(
        self,
        emu: Emulator,
        rid: str,
        password: str | None = None,
        *,
        cert: DeviceCert | None = None,
        tmp_path: Path | None = None,
        user: str | None = None,
        client_id: str | None = None,
        subscribe: bool = True,
    ) -> None:
        certfile = keyfile = None
        if cert is not None:
            assert tmp_path is not None
            certfile, keyfile = (str(f) for f in cert.write(tmp_path))
        self.client = RawClient(emu, certfile=certfile, keyfile=keyfile)
        self.client.send(connect_packet(client_id if client_id is not None else rid, user or username(emu, rid), password))
        self.connack = self.client.connack()
        if self.connack == 0 and subscribe:
            self.client.send(subscribe_packet([("$dps/registrations/res/#", 1)], packet_id=1))
            kind, _, body = self.client.read_packet()
            assert kind == 9 and body[2:] == b"\x01", (kind, body)
        self._packet_id = 10

    def request(self, topic: str, body: bytes) -> tuple[str, dict]:
        """Publish at QoS 1; (response topic, parsed body) of the answer."""
        self._packet_id += 1
        self.client.send(publish_packet(topic, body, qos=1, packet_id=self._packet_id))
        while True:
            packet = self.client.read_packet()
            assert packet is not None, "the server closed the connection"
            kind, flags, raw = packet
            if kind == 4:  # PUBACK
                continue
            assert kind == 3, f"unexpected packet type {kind}"
            topic, payload = decode_publish(flags, raw)
            if (flags >> 1) & 3:
                self.client.send(bytes([0x40, 2]) + raw[2 + struct.unpack_from("!H", raw)[0] :][:2])
            return topic, json.loads(payload)

    def register(self, rid: str, body: dict | bytes | None = None, request_id: str = "1") -> tuple[str, dict]:
        if body is None:
            body = {"payload": None, "registrationId": rid}
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.request(REGISTER.format(request_id), raw)

    def poll(self, operation_id: str, request_id: str = "2") -> tuple[str, dict]:
        return self.request(POLL.format(request_id, operation_id), b"")

    def provision(self, rid: str, body: dict | None = None) -> dict:
        """Register, then poll until the operation is no longer assigning; the final answer."""
        topic, answer = self.register(rid, body)
        for n in range(10):
            if answer.get("status") != "assigning":
                assert topic.startswith("$dps/registrations/res/200/"), topic
                return answer
            topic, answer = self.poll(answer["operationId"], request_id=str(n + 2))
        raise AssertionError(f"still assigning after 10 polls: {answer}")

    def close(self) -> None:
        self.client.close()
