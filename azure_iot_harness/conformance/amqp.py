"""The back end's AMQP side as Azure's service SDKs use it, for any target known by its service
connection string: cloud-to-device sending on `/messages/devicebound`, and the IoT Hub-host
redirect that names the hub's Event Hubs-compatible endpoint (where telemetry is read with
azure-eventhub, `eventhub.py`).

The AMQP is proton's engine (python-qpid-proton, client mode) with SASL PLAIN
(`{policy}@sas.root.{hub}` and a SAS token, as the az CLI and uamqp do); the socket and TLS are the
standard library's, with the `ssl.SSLContext` the rest of the service helper uses, so the CA and
the host-name check (an IP address too) are the same as for the REST calls. Blocking: each call
runs the engine on the calling thread until the peer answers.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from proton import Connection, Delivery, Endpoint, Link, Message, Transport

from ..emulator.protocol import sas
from ..errors import HarnessError
from ..running import connection_strings

AMQPS_PORT = 5671
TIMEOUT = 30.0
_READ = 64 * 1024


class AmqpError(HarnessError, AssertionError):
    """The peer refused (a link, a delivery, the connection): `condition` is its AMQP error condition."""

    def __init__(self, what: str, condition: str | None, description: str | None = None) -> None:
        super().__init__(f"{what}: {condition or 'no condition'}{f' ({description})' if description else ''}")
        self.condition, self.description = condition, description


@dataclass(frozen=True)
class ServiceCredentials:
    """A hub's service connection string, split for AMQP."""

    host: str  # the hub host name (TLS server name, SAS audience)
    policy: str
    key: str

    @classmethod
    def parse(cls, connection_string: str) -> ServiceCredentials:
        fields = connection_strings.parse(connection_string)
        return cls(fields["HostName"].partition(":")[0], fields["SharedAccessKeyName"], fields["SharedAccessKey"])

    @property
    def hub_name(self) -> str:
        return self.host.split(".", 1)[0]

    def plain(self, ttl: int = 3600) -> tuple[str, str]:
        """SASL PLAIN's user name and password (a SAS token for the hub's host)."""
        return f"{self.policy}@sas.root.{self.hub_name}", sas.generate(self.host, self.key, key_name=self.policy, ttl=ttl)


class AmqpClient:
    """One AMQP connection to `host:port` over TLS; blocking, not thread-safe (callers lock)."""

    def __init__(self, creds: ServiceCredentials, ssl_context: ssl.SSLContext, *, port: int = AMQPS_PORT, address: str | None = None,
                 timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        raw = socket.create_connection((address or creds.host, port), timeout=timeout)
        try:
            self._sock = ssl_context.wrap_socket(raw, server_hostname=creds.host)
        except BaseException:
            raw.close()
            raise
        self.connection = Connection()
        self.connection.hostname = creds.host
        self.connection.container = f"azure-iot-harness-conformance-{uuid.uuid4().hex[:8]}"
        user, password = creds.plain()
        self.connection.user, self.connection.password = user, password
        self.transport = Transport(Transport.CLIENT)
        sasl = self.transport.sasl()
        sasl.allowed_mechs("PLAIN")
        sasl.allow_insecure_mechs = True  # the TLS is the socket's, not proton's: proton cannot see it
        self.transport.bind(self.connection)
        self.connection.open()
        self.session = self.connection.session()
        self.session.open()
        self.wait(lambda: bool(self.connection.state & Endpoint.REMOTE_ACTIVE), "the connection to open")

    def wait(self, done: Any, what: str) -> None:
        """Run the engine until `done()`; AmqpError if the connection ends first or time runs out."""
        deadline = time.monotonic() + self.timeout
        while True:
            self._write()
            if done():
                return
            condition = self.connection.remote_condition or self.transport.condition
            if condition is not None or self.transport.closed:
                raise AmqpError(f"waiting for {what}, the connection ended", condition and condition.name, condition and condition.description)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AmqpError(f"no answer within {self.timeout:g} s waiting for {what}", None)
            self._sock.settimeout(left)
            try:
                data = self._sock.recv(_READ)
            except TimeoutError:
                continue
            if data:
                self.transport.push(data)
            else:
                self.transport.close_tail()

    def _write(self) -> None:
        while (pending := self.transport.pending()) > 0:
            data = self.transport.peek(pending)
            self._sock.sendall(data)
            self.transport.pop(len(data))

    def attach(self, link: Link, what: str) -> Link:
        """Open `link` and wait for the peer's attach; AmqpError with the detach's condition if refused."""
        link.open()
        self.wait(lambda: bool(link.state & (Endpoint.REMOTE_ACTIVE | Endpoint.REMOTE_CLOSED)), what)
        if link.state & Endpoint.REMOTE_CLOSED:
            self.wait(lambda: bool(link.state & Endpoint.REMOTE_CLOSED), what)
            condition = link.remote_condition
            raise LinkRefused(what, condition and condition.name, condition and condition.description, condition and condition.info)
        return link

    def close(self) -> None:
        try:
            self.connection.close()
            self._write()
        except OSError:
            pass
        finally:
            self._sock.close()


class LinkRefused(AmqpError):
    def __init__(self, what: str, condition: str | None, description: str | None, info: Any) -> None:
        super().__init__(f"attaching {what}", condition, description)
        self.info = info or {}


def event_hubs_connection_string(creds: ServiceCredentials, ssl_context: ssl.SSLContext, *, port: int = AMQPS_PORT,
                                 address: str | None = None) -> tuple[str, str | None]:
    """The Event Hubs-compatible connection string IoT Hub's redirect names (a receiver on
    `messages/events` is detached with `amqp:link:redirect`), as Azure's samples build it; with the
    `sb://host:port` endpoint to give azure-eventhub when the port is not 5671, else None."""
    client = AmqpClient(creds, ssl_context, port=port, address=address)
    try:
        receiver = client.session.receiver(f"redirect-{uuid.uuid4().hex[:8]}")
        receiver.source.address = "messages/events/$management"
        receiver.target.address = "messages/events/$management"
        client.attach(receiver, "a receiver on messages/events")
    except LinkRefused as exc:
        info = {str(k): v for k, v in exc.info.items()}
        if exc.condition != "amqp:link:redirect" or "address" not in info:
            raise
        found = re.match(r"amqps://([^/:]+)(?::(\d+))?/([^/]+)/", str(info["address"]))
        if found is None:
            raise AmqpError("the redirect's address is not amqps://host:port/{event hub}/…", exc.condition, str(info["address"])) from None
        host, redirect_port, entity = found.group(1), int(found.group(2) or AMQPS_PORT), found.group(3)
        text = connection_strings.build(("Endpoint", f"sb://{host}/"), ("SharedAccessKeyName", creds.policy),
                                        ("SharedAccessKey", creds.key), ("EntityPath", entity))
        return text, (f"sb://{host}:{redirect_port}" if redirect_port != AMQPS_PORT else None)
    finally:
        client.close()
    raise AmqpError("a receiver on messages/events was not redirected", None)


class AmqpC2D:
    """Cloud-to-device messages on `/messages/devicebound`, as the service SDKs send them: one
    connection and sender link kept open (made again after a failure)."""

    def __init__(self, creds: ServiceCredentials, ssl_context: ssl.SSLContext, *, port: int = AMQPS_PORT, address: str | None = None) -> None:
        self._creds, self._ssl, self._port, self._address = creds, ssl_context, port, address
        self._client: AmqpClient | None = None
        self._sender: Link | None = None
        self._lock = threading.Lock()

    def send(self, device_id: str, data: str, properties: dict[str, str] | None = None, **options: Any) -> str:
        """Options: messageId, correlationId, ack (none|positive|negative|full), ttl (seconds)."""
        message_id = str(options.get("messageId") or uuid.uuid4())
        app = dict(properties or {})
        if options.get("ack"):
            app["iothub-ack"] = str(options["ack"])
        msg = Message(body=data.encode(), id=message_id, address=f"/devices/{device_id}/messages/devicebound",
                      properties=app, correlation_id=options.get("correlationId"))
        if options.get("ttl"):
            msg.expiry_time = time.time() + float(options["ttl"])
        msg.inferred = True  # bytes go out as a data section
        with self._lock:
            try:
                self._send(msg)
            except (OSError, AmqpError):
                self.close()
                raise
        return message_id

    def _send(self, msg: Message) -> None:
        if self._client is None or self._sender is None:
            self._client = AmqpClient(self._creds, self._ssl, port=self._port, address=self._address)
            sender = self._client.session.sender(f"c2d-{uuid.uuid4().hex[:8]}")
            sender.target.address = "/messages/devicebound"
            self._sender = self._client.attach(sender, "a sender on /messages/devicebound")
        client, sender = self._client, self._sender
        client.wait(lambda: sender.credit > 0 or bool(sender.state & Endpoint.REMOTE_CLOSED), "credit on /messages/devicebound")
        dlv = sender.delivery(uuid.uuid4().bytes)
        sender.send(msg.encode())
        sender.advance()
        client.wait(lambda: bool(dlv.remote_state) or dlv.settled or bool(sender.state & Endpoint.REMOTE_CLOSED), "the C2D message's disposition")
        state, condition = dlv.remote_state, dlv.remote.condition
        dlv.settle()
        if state != Delivery.ACCEPTED:
            link_condition = sender.remote_condition
            condition = condition or link_condition
            raise AmqpError(f"C2D message to {msg.address} was not accepted", condition and condition.name, condition and condition.description)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._sender = None


__all__ = ["AmqpC2D", "AmqpClient", "AmqpError", "LinkRefused", "ServiceCredentials", "event_hubs_connection_string"]
