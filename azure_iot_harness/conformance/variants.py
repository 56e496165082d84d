"""Client variants the conformance checks drive, each through its own real client library:
`paho` (the raw paho device script from the field) and `sdk` (the official azure-iot-device).

A variant opens a `Session` for a device's credentials; every session offers the same few
operations, so one check body serves every variant.
"""

from __future__ import annotations

import abc
import json
import queue
import ssl
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import HarnessError
from .credentials import DeviceCredentials


class Refused(HarnessError):
    """The hub refused the connection; `code` is the CONNACK return code when there was one."""

    def __init__(self, code: int | None, text: str) -> None:
        super().__init__(text)
        self.code = code


class Session(abc.ABC):
    """What every variant's session offers the checks."""

    @abc.abstractmethod
    def send_telemetry(self, body: str, properties: dict[str, str]) -> None:
        ...

    @abc.abstractmethod
    def subscribe_c2d(self) -> None:
        ...

    @abc.abstractmethod
    def receive_c2d(self, timeout: float) -> tuple[str, dict[str, str]]:
        ...

    @abc.abstractmethod
    def get_twin(self) -> dict:
        ...

    @abc.abstractmethod
    def report(self, patch: dict) -> None:
        ...

    @abc.abstractmethod
    def subscribe_desired(self) -> None:
        ...

    @abc.abstractmethod
    def next_desired(self, timeout: float) -> dict:
        ...

    @abc.abstractmethod
    def serve_method(self, handler: Callable[[str, Any], tuple[int, Any]]) -> None:
        ...

    @abc.abstractmethod
    def close(self) -> None:
        ...


# ---- paho ---------------------------------------------------------------------------------------------


def paho_client(client_id: str, protocol: int | None = None) -> Any:
    from ..clients.link import paho_client as make

    client = make(client_id)
    if protocol is not None:
        client._protocol = protocol  # MQTT 3.1 probe only: paho sends MQIsdp/3 for MQTTv31
    return client


def tls_context(creds: DeviceCredentials, *, cert_file: str | None = None, key_file: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=creds.ca_file) if creds.ca_file else ssl.create_default_context()
    cert_file = cert_file or creds.cert_file
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file or creds.key_file)
    return ctx


class PahoSession(Session):
    def __init__(self, creds: DeviceCredentials, *, password: str | None | bool = True, protocol: int | None = None,
                 cert: tuple[str, str] | None = None) -> None:
        self.creds = creds
        self.client = paho_client(creds.client_id, protocol)
        pw = creds.password if password is True else (password or None)
        self.client.username_pw_set(creds.username, pw)
        self.client.tls_set_context(tls_context(creds, cert_file=cert and cert[0], key_file=cert and cert[1]))
        self.connack: queue.Queue[int] = queue.Queue()
        self.closed = threading.Event()
        self.messages: queue.Queue[Any] = queue.Queue()
        self.twin_res: queue.Queue[Any] = queue.Queue()
        self.desired: queue.Queue[dict] = queue.Queue()
        self._method: Callable | None = None
        self.client.on_connect = lambda c, u, f, rc, *r: self.connack.put(int(rc))
        self.client.on_disconnect = lambda c, u, rc, *r: self.closed.set()
        self.client.on_message = self._on_message

    def connect(self) -> PahoSession:
        try:
            self.client.connect(self.creds.mqtt_address, self.creds.mqtt_port, keepalive=60)
        except (OSError, ssl.SSLError) as exc:
            raise Refused(None, f"TLS/TCP failure: {exc}") from None
        self.client.loop_start()
        try:
            rc = self.connack.get(timeout=15)
        except queue.Empty:
            self.client.loop_stop()
            raise Refused(None, "closed without CONNACK" if self.closed.is_set() else "no CONNACK in 15 s") from None
        if rc != 0:
            self.client.loop_stop()
            raise Refused(rc, f"CONNACK {rc}")
        return self

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        topic = msg.topic
        if topic.startswith("$iothub/twin/res/"):
            status = int(topic.split("/")[3])
            self.twin_res.put((status, msg.payload))
        elif topic.startswith("$iothub/twin/PATCH/properties/desired/"):
            self.desired.put(json.loads(msg.payload))
        elif topic.startswith("$iothub/methods/POST/"):
            name, _, query = topic[len("$iothub/methods/POST/"):].partition("/?")
            rid = urllib.parse.parse_qs(query)["$rid"][0]
            status, payload = self._method(name, json.loads(msg.payload or b"null")) if self._method else (501, None)
            client.publish(f"$iothub/methods/res/{status}/?$rid={rid}", json.dumps(payload), qos=0)
        else:
            self.messages.put(msg)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> bool:
        """True when the hub acknowledged it; False when it closed the connection instead."""
        info = self.client.publish(topic, payload, qos=qos)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self.closed.is_set():
            if info.is_published():
                return True
            time.sleep(0.02)
        return False

    def send_telemetry(self, body: str, properties: dict[str, str]) -> None:
        bag = urllib.parse.urlencode(properties, quote_via=urllib.parse.quote)
        assert self.publish(f"devices/{self.creds.device_id}/messages/events/{bag}", body), "telemetry not acknowledged"

    def _subscribe(self, topic: str, qos: int = 1) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos)
        assert done.wait(10), f"no SUBACK for {topic}"

    def receive_c2d(self, timeout: float) -> tuple[str, dict[str, str]]:
        msg = self.messages.get(timeout=timeout)
        bag = msg.topic.split("/messages/devicebound/", 1)[1]
        props = dict(urllib.parse.parse_qsl(bag, keep_blank_values=True))
        return msg.payload.decode(), props

    def subscribe_c2d(self) -> None:
        self._subscribe(f"devices/{self.creds.device_id}/messages/devicebound/#")

    def _twin(self, method_path: str, body: bytes) -> tuple[int, bytes]:
        if not getattr(self, "_twin_sub", False):
            self._subscribe("$iothub/twin/res/#", 0)
            self._twin_sub = True
        self.client.publish(f"$iothub/twin/{method_path}/?$rid={uuid.uuid4().hex[:8]}", body, qos=0)
        return self.twin_res.get(timeout=10)

    def get_twin(self) -> dict:
        status, body = self._twin("GET", b"")
        assert status == 200, f"twin GET answered {status}"
        return json.loads(body)

    def report(self, patch: dict) -> None:
        status, _ = self._twin("PATCH/properties/reported", json.dumps(patch).encode())
        assert status == 204, f"reported PATCH answered {status}"

    def subscribe_desired(self) -> None:
        self._subscribe("$iothub/twin/PATCH/properties/desired/#", 0)

    def next_desired(self, timeout: float) -> dict:
        return self.desired.get(timeout=timeout)

    def serve_method(self, handler: Callable[[str, Any], tuple[int, Any]]) -> None:
        self._method = handler
        self._subscribe("$iothub/methods/POST/#", 0)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ---- the official device SDK -----------------------------------------------------------------------------


class SdkSession(Session):
    """azure-iot-device; trusts the CA through `server_verification_cert` (no global state); a
    leaf device reaches its IoT Edge gateway through `gateway_hostname`."""

    def __init__(self, creds: DeviceCredentials) -> None:
        from azure.iot.device import X509, IoTHubDeviceClient

        ca = open(creds.ca_file).read() if creds.ca_file else None
        kw: dict[str, Any] = {"server_verification_cert": ca} if ca else {}
        if creds.gateway_host:  # a leaf device: TLS to the IoT Edge gateway (always its port 8883)
            kw["gateway_hostname"] = creds.gateway_host
        if creds.cert_file:
            x509 = X509(cert_file=creds.cert_file, key_file=creds.key_file)
            self.client = IoTHubDeviceClient.create_from_x509_certificate(x509=x509, hostname=creds.host, device_id=creds.device_id, **kw)
        elif creds.key:
            self.client = IoTHubDeviceClient.create_from_symmetric_key(symmetric_key=creds.key, hostname=creds.host, device_id=creds.device_id, **kw)
        else:
            raise ValueError(f"{creds.client_id} has neither a certificate nor a key")
        self.c2d: queue.Queue[Any] = queue.Queue()
        self.desired: queue.Queue[dict] = queue.Queue()

    def connect(self) -> SdkSession:
        from azure.iot.device.exceptions import ClientError, ConnectionFailedError, CredentialError

        try:
            self.client.connect()
        except CredentialError as exc:
            self.client.shutdown()
            raise Refused(5, f"CredentialError: {exc}") from None
        except (ConnectionFailedError, ClientError) as exc:
            self.client.shutdown()
            raise Refused(None, f"{type(exc).__name__}: {exc}") from None
        return self

    def send_telemetry(self, body: str, properties: dict[str, str]) -> None:
        from azure.iot.device import Message

        msg = Message(body)
        msg.custom_properties.update(properties)
        self.client.send_message(msg)

    # Setting a handler returns once the SDK's SUBSCRIBE was acknowledged: azure-iot-device's
    # sync client enables the feature and waits for it (GenericIoTHubClient._enable_feature).

    def subscribe_c2d(self) -> None:
        self.client.on_message_received = self.c2d.put

    def receive_c2d(self, timeout: float) -> tuple[str, dict[str, str]]:
        msg = self.c2d.get(timeout=timeout)
        data = msg.data.decode() if isinstance(msg.data, bytes) else str(msg.data)
        return data, dict(msg.custom_properties)

    def get_twin(self) -> dict:
        return self.client.get_twin()

    def report(self, patch: dict) -> None:
        self.client.patch_twin_reported_properties(patch)

    def subscribe_desired(self) -> None:
        self.client.on_twin_desired_properties_patch_received = self.desired.put

    def next_desired(self, timeout: float) -> dict:
        return self.desired.get(timeout=timeout)

    def serve_method(self, handler: Callable[[str, Any], tuple[int, Any]]) -> None:
        from azure.iot.device import MethodResponse

        def on_request(req: Any) -> None:
            status, payload = handler(req.name, req.payload)
            self.client.send_method_response(MethodResponse.create_from_method_request(req, status, payload))

        self.client.on_method_request_received = on_request

    def close(self) -> None:
        self.client.shutdown()


VARIANTS = ("paho", "sdk")


def open_session(variant: str, creds: DeviceCredentials) -> Session:
    if variant == "paho":
        return PahoSession(creds).connect()
    if variant == "sdk":
        return SdkSession(creds).connect()
    raise ValueError(variant)
