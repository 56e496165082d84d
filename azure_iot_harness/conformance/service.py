"""The back end's side, as a test sees it: IoT Hub's and DPS's service REST APIs, plus the two
things Azure offers over AMQP only — reading telemetry and sending cloud-to-device messages —
behind a small observer/sender pair: the conformance targets give the AMQP pair (`eventhub.py`,
`amqp.py`: the same code for the emulator and for Azure); the pytest plugin's default is the
emulator's `/_emulator/` API.

Nothing here reaches into an emulator's internals: it works against any emulator known by its
connection strings, and against real Azure.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import HarnessError
from ..running.service import DPS_API_VERSION, HUB_API_VERSION, ServiceRest


class UnexpectedAnswer(HarnessError, AssertionError):
    """A service call answered with an unexpected status (an AssertionError too, so a check
    fails plainly rather than erroring)."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {path} answered {status}: {body}")
        self.status, self.body = status, body


class _Rest:
    """One service endpoint whose unexpected answers fail the test (UnexpectedAnswer)."""

    def __init__(self, connection_string: str, ssl_context: ssl.SSLContext) -> None:
        self.service = ServiceRest.from_connection_string(connection_string, ssl_context)
        self.host = self.service.address

    def request(self, method: str, path: str, body: Any = None, *, api: str, ok: tuple[int, ...] = (200,), headers: dict | None = None, timeout: float = 60) -> Any:
        answer = self.service.call(method, path, body, api=api, headers=headers, timeout=timeout)
        if answer.status not in ok:
            raise UnexpectedAnswer(method, path, answer.status, answer.body())
        return answer.body()


# ---- telemetry observer and C2D sender: the AMQP-only parts ---------------------------------------


class TelemetrySource(Protocol):
    def read(self, after: Any) -> tuple[list[dict], Any]:
        """Messages after a position, and the new position. Each message is a dict with
        deviceId, moduleId, body (text), properties, systemProperties."""

    def position(self) -> Any:
        """The current end: only messages after it are read."""

    def close(self) -> None: ...


class C2DSender(Protocol):
    def send(self, device_id: str, data: str, properties: dict[str, str] | None = None, **options: Any) -> str: ...

    def close(self) -> None: ...


class EmulatorTelemetry:
    """`GET /_emulator/telemetry` with a ServiceConnect token."""

    def __init__(self, rest: _Rest) -> None:
        self.rest = rest

    def read(self, after: int) -> tuple[list[dict], int]:
        page = self.rest.request("GET", f"/_emulator/telemetry?after={after}&limit=1000", api=HUB_API_VERSION)
        return page["messages"], page["last"]

    def close(self) -> None:
        pass

    def position(self) -> int:
        last = 0
        while True:
            page = self.rest.request("GET", f"/_emulator/telemetry?after={last}&limit=1000", api=HUB_API_VERSION)
            if not page["messages"]:
                return last
            last = page["last"]


class EmulatorC2D:
    """`POST /_emulator/c2d/{deviceId}`: what the AMQP-only service SDK call does in Azure."""

    def __init__(self, rest: _Rest) -> None:
        self.rest = rest

    def send(self, device_id: str, data: str, properties: dict[str, str] | None = None, **options: Any) -> str:
        body: dict[str, Any] = {"data": data, "properties": properties or {}}
        body.update({k: v for k, v in options.items() if v is not None})
        out = self.rest.request("POST", f"/_emulator/c2d/{urllib.parse.quote(device_id, safe='')}", body, api=HUB_API_VERSION, ok=(201,))
        return out["messageId"]

    def close(self) -> None:
        pass


# ---- near misses -------------------------------------------------------------------------------------


@dataclass
class Expectation:
    device_id: str | None = None
    module_id: str | None = None
    body: Any = None  # text, bytes, or a JSON-able object compared after parsing
    properties: dict[str, str] = field(default_factory=dict)
    predicate: Callable[[dict], bool] | None = None

    def describe(self) -> str:
        parts = []
        if self.module_id:
            parts.append(f"moduleId={self.module_id!r}")
        if self.body is not None:
            parts.append(f"body={self.body!r}")
        if self.properties:
            parts.append(f"properties ⊇ {self.properties!r}")
        if self.predicate is not None:
            parts.append(f"predicate {getattr(self.predicate, '__name__', 'given')}")
        return ", ".join(parts) or "anything"

    def matches(self, msg: dict) -> bool:
        if self.device_id is not None and msg.get("deviceId") != self.device_id:
            return False
        if self.module_id is not None and msg.get("moduleId") != self.module_id:
            return False
        if self.body is not None and not _body_equals(msg.get("body"), self.body):
            return False
        props = msg.get("properties") or {}
        if any(props.get(k) != v for k, v in self.properties.items()):
            return False
        return self.predicate is None or bool(self.predicate(msg))


def _body_equals(actual: str | None, expected: Any) -> bool:
    if isinstance(expected, bytes):
        expected = expected.decode(errors="replace")
    if isinstance(expected, str):
        return actual == expected
    try:
        return json.loads(actual or "") == expected
    except ValueError:
        return False


def near_miss_report(expectation: Expectation, seen: list[dict], limit: int = 5) -> str:
    """'3 messages from dev1, none matched body=…' followed by the closest few."""
    mine = [m for m in seen if expectation.device_id is None or m.get("deviceId") == expectation.device_id]
    who = f"from {expectation.device_id}" if expectation.device_id else "in all"
    lines = [f"{len(mine)} message{'s' if len(mine) != 1 else ''} {who}, none matched {expectation.describe()}"]
    for m in mine[-limit:]:
        lines.append(f"  - body={m.get('body')!r} properties={m.get('properties')!r}" + (f" moduleId={m['moduleId']!r}" if m.get("moduleId") else ""))
    others = sorted({str(m.get("deviceId")) for m in seen} - {expectation.device_id}) if expectation.device_id else []
    if others:
        lines.append(f"  (also messages from: {', '.join(others)})")
    return "\n".join(lines)


# ---- the helper tests use ------------------------------------------------------------------------------


class HubService:
    """Service-side helper: identities, twins, methods, DPS enrollments, telemetry, C2D."""

    def __init__(
        self,
        *,
        hub_connection_string: str,
        ca_file: str | None,
        dps_connection_string: str | None = None,
        id_scope: str | None = None,
        telemetry: TelemetrySource | None = None,
        c2d: C2DSender | None | str = "emulator",
    ) -> None:
        self.ca_file = ca_file
        self.ssl_context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        self.hub = _Rest(hub_connection_string, self.ssl_context)
        self.dps = _Rest(dps_connection_string, self.ssl_context) if dps_connection_string else None
        self.id_scope = id_scope
        self.hub_connection_string = hub_connection_string
        self.dps_connection_string = dps_connection_string
        self._telemetry = telemetry if telemetry is not None else EmulatorTelemetry(self.hub)
        if isinstance(c2d, str) and c2d != "emulator":
            raise ValueError(f"c2d: 'emulator', a C2DSender or None, not {c2d!r}")
        # None: no way to send (Azure: AMQP only)
        self._c2d: C2DSender | None = EmulatorC2D(self.hub) if isinstance(c2d, str) else c2d
        self._seen: list[dict] = []
        self._position: Any = self._telemetry.position()

    @property
    def hub_host(self) -> str:
        """The hub host name devices use (without the service port)."""
        return self.hub.host

    def close(self) -> None:
        """Close the telemetry reader and the C2D sender (their connections)."""
        self._telemetry.close()
        if self._c2d is not None:
            self._c2d.close()

    # identities
    def create_device(self, device_id: str, *, key: str | None = None, thumbprint: str | None = None, edge: bool = False,
                      parent_scope: str | None = None, ca_signed: bool = False) -> dict:
        """A SAS device (keys generated unless given) or, with `thumbprint`, a self-signed X.509 device,
        or (`ca_signed`) a certificateAuthority one; with `parent_scope` (an IoT Edge device's
        `deviceScope`), a child of that edge device."""
        if ca_signed:
            auth: dict = {"type": "certificateAuthority"}
        elif thumbprint:
            auth = {"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": thumbprint, "secondaryThumbprint": thumbprint}}
        else:
            key = key or base64.b64encode(_random(32)).decode()
            auth = {"type": "sas", "symmetricKey": {"primaryKey": key, "secondaryKey": base64.b64encode(_random(32)).decode()}}
        doc = {"deviceId": device_id, "status": "enabled", "authentication": auth, "capabilities": {"iotEdge": edge}}
        if parent_scope:
            doc.update(deviceScope=parent_scope, parentScopes=[parent_scope])
        return self.hub.request("PUT", f"/devices/{_q(device_id)}", doc, api=HUB_API_VERSION)

    def create_module(self, device_id: str, module_id: str, *, key: str | None = None) -> dict:
        key = key or base64.b64encode(_random(32)).decode()
        doc = {"deviceId": device_id, "moduleId": module_id, "authentication": {"type": "sas", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}}
        return self.hub.request("PUT", f"/devices/{_q(device_id)}/modules/{_q(module_id)}", doc, api=HUB_API_VERSION)

    def get_device(self, device_id: str) -> dict:
        return self.hub.request("GET", f"/devices/{_q(device_id)}", api=HUB_API_VERSION)

    def delete_device(self, device_id: str) -> None:
        self.hub.request("DELETE", f"/devices/{_q(device_id)}", api=HUB_API_VERSION, ok=(200, 204, 404), headers={"If-Match": "*"})

    # twins and methods
    def get_twin(self, device_id: str, module_id: str | None = None) -> dict:
        return self.hub.request("GET", _twin_path(device_id, module_id), api=HUB_API_VERSION)

    def patch_desired(self, device_id: str, desired: dict, module_id: str | None = None) -> dict:
        return self.hub.request("PATCH", _twin_path(device_id, module_id), {"properties": {"desired": desired}}, api=HUB_API_VERSION, headers={"If-Match": "*"})

    def invoke_method(self, device_id: str, name: str, payload: Any = None, *, module_id: str | None = None, timeout: int = 30,
                      connect_timeout: int = 0, ok: tuple[int, ...] = (200,)) -> dict:
        """{"status": int, "payload": …}; a device that is offline or slow answers 404/504 (UnexpectedAnswer).
        `connect_timeout`: how long the hub waits for the device to be online (connectTimeoutInSeconds)."""
        body = {"methodName": name, "payload": payload, "responseTimeoutInSeconds": timeout, "connectTimeoutInSeconds": connect_timeout}
        return self.hub.request("POST", _twin_path(device_id, module_id) + "/methods", body, api=HUB_API_VERSION, ok=ok,
                                timeout=timeout + connect_timeout + 30)

    # DPS
    def create_enrollment(self, registration_id: str, *, symmetric_key: str | None = None, certificate_pem: bytes | None = None) -> dict:
        """An individual enrollment: symmetric key (generated unless given) or an X.509 client certificate."""
        if self.dps is None:
            raise AssertionError("no DPS service connection string for this target")
        if certificate_pem is not None:
            first = certificate_pem.split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
            att = {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": first.decode()}}}}  # PEM text, as DPS accepts
        else:
            key = symmetric_key or base64.b64encode(_random(32)).decode()
            att = {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}
        doc = {"registrationId": registration_id, "attestation": att, "provisioningStatus": "enabled"}
        return self.dps.request("PUT", f"/enrollments/{_q(registration_id)}", doc, api=DPS_API_VERSION)

    def create_enrollment_group(self, group_id: str, signing_pem: bytes) -> dict:
        """An X.509 enrollment group whose signing certificate is `signing_pem` (a root or an intermediate)."""
        if self.dps is None:
            raise AssertionError("no DPS service connection string for this target")
        att = {"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": signing_pem.decode()}}}}
        doc = {"enrollmentGroupId": group_id, "attestation": att, "provisioningStatus": "enabled"}
        return self.dps.request("PUT", f"/enrollmentGroups/{_q(group_id)}", doc, api=DPS_API_VERSION)

    def delete_enrollment_group(self, group_id: str) -> None:
        if self.dps is not None:
            self.dps.request("DELETE", f"/enrollmentGroups/{_q(group_id)}", api=DPS_API_VERSION, ok=(200, 204, 404), headers={"If-Match": "*"})

    def upload_verified_ca(self, name: str, pem: bytes) -> None:
        """Upload a CA certificate as verified to the hub, through the management plane's route
        (the emulator takes the hub's service token there; Azure wants Entra ID, which this does not speak)."""
        path = f"/subscriptions/conformance/resourceGroups/conformance/providers/Microsoft.Devices/IotHubs/{self.hub.host.split('.')[0]}/certificates/{_q(name)}"
        self.hub.request("PUT", path, {"properties": {"certificate": pem.decode(), "isVerified": True}}, api="2023-06-30", ok=(200, 201))

    def delete_enrollment(self, registration_id: str) -> None:
        if self.dps is not None:
            self.dps.request("DELETE", f"/enrollments/{_q(registration_id)}", api=DPS_API_VERSION, ok=(200, 204, 404), headers={"If-Match": "*"})

    # C2D
    @property
    def can_send_c2d(self) -> bool:
        return self._c2d is not None

    def send_c2d(self, device_id: str, data: str, properties: dict[str, str] | None = None, **options: Any) -> str:
        """Queue a cloud-to-device message; returns its message id."""
        if self._c2d is None:
            raise AssertionError("this target has no way to send cloud-to-device messages (AMQP only in Azure)")
        return self._c2d.send(device_id, data, properties, **options)

    # telemetry
    def telemetry(self, device_id: str | None = None) -> list[dict]:
        """Every message received since this helper was made (or since `forget_telemetry()`)."""
        self._poll()
        return [m for m in self._seen if device_id is None or m.get("deviceId") == device_id]

    def forget_telemetry(self) -> None:
        self._poll()
        self._seen.clear()

    def _poll(self) -> None:
        messages, self._position = self._telemetry.read(self._position)
        self._seen.extend(messages)

    def wait_for_telemetry(
        self,
        device_id: str | None = None,
        *,
        body: Any = None,
        properties: dict[str, str] | None = None,
        module_id: str | None = None,
        predicate: Callable[[dict], bool] | None = None,
        count: int = 1,
        timeout: float = 15.0,
    ) -> list[dict]:
        """The first `count` messages that match; AssertionError listing the near misses otherwise."""
        exp = Expectation(device_id, module_id, body, dict(properties or {}), predicate)
        deadline = time.monotonic() + timeout
        while True:
            self._poll()
            hits = [m for m in self._seen if exp.matches(m)]
            if len(hits) >= count:
                return hits[:count]
            if time.monotonic() > deadline:
                got = f"{len(hits)} of {count} expected matched within {timeout:g} s" if hits else f"nothing matched within {timeout:g} s"
                raise AssertionError(f"{got}: {near_miss_report(exp, self._seen)}")
            time.sleep(0.05)

    assert_telemetry = wait_for_telemetry

    def assert_no_telemetry(self, device_id: str | None = None, *, wait: float = 1.0) -> None:
        time.sleep(wait)
        got = self.telemetry(device_id)
        assert not got, f"expected no telemetry{' from ' + device_id if device_id else ''}, got {len(got)}: {got[:3]}"


def _twin_path(device_id: str, module_id: str | None) -> str:
    return f"/twins/{_q(device_id)}" + (f"/modules/{_q(module_id)}" if module_id else "")


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _random(n: int) -> bytes:
    import os

    return os.urandom(n)
