"""A paho-mqtt connection with blocking connect/publish and one-line errors (paho 1.6 and 2.x).

paho 2.x changed the callback signatures; asking it for version 1 of its callback API keeps
the CONNACK return code an integer (2.x's version 2 turns it into an MQTT 5 reason code), so one
set of callbacks serves both.
"""

from __future__ import annotations

import ssl
import threading
import time
import warnings
from typing import Any

from ..errors import connack_text
from ..running.errors import CommandError
from .failures import tls_failure
from .hub_target import HubTarget


def paho_client(client_id: str, *, clean_session: bool = True) -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise CommandError("paho-mqtt is not installed (pip install paho-mqtt)", 2) from None
    kwargs = dict(client_id=client_id, clean_session=clean_session, protocol=mqtt.MQTTv311, reconnect_on_failure=False)
    api = getattr(mqtt, "CallbackAPIVersion", None)
    if api is None:
        return mqtt.Client(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return mqtt.Client(api.VERSION1, **kwargs)


class MqttLink:
    """One MQTT 3.1.1 connection. `what` names the peer in messages ("the hub", "the local broker")."""

    def __init__(
        self,
        *,
        address: str,
        port: int,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        ca_file: str | None = None,
        clean_session: bool = True,
        keepalive: int = 60,
        what: str = "the hub",
    ) -> None:
        self.address, self.port, self.what, self.ca_file, self.tls = address, port, what, ca_file, tls
        self.keepalive = keepalive
        self.client = paho_client(client_id, clean_session=clean_session)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(tls)
        self._cond = threading.Condition()
        self.connack: int | None = None
        self.disconnect_rc: int | None = None
        self.acked: set[int] = set()
        self.subacked: set[int] = set()
        self.on_message: Any = None
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda c, u, msg: self.on_message and self.on_message(msg)

    # paho calls these on its network thread.
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: int, *rest: Any) -> None:
        with self._cond:
            self.connack = int(rc)
            self._cond.notify_all()

    def _on_disconnect(self, client: Any, userdata: Any, rc: Any, *rest: Any) -> None:
        with self._cond:
            self.disconnect_rc = int(rc) if isinstance(rc, int) else 1
            self._cond.notify_all()

    def _on_publish(self, client: Any, userdata: Any, mid: int, *rest: Any) -> None:
        with self._cond:
            self.acked.add(mid)
            self._cond.notify_all()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, *rest: Any) -> None:
        with self._cond:
            self.subacked.add(mid)
            self._cond.notify_all()

    def connect(self, timeout: float = 15.0) -> None:
        """Connect and wait for CONNACK 0; CommandError naming the reason otherwise."""
        scheme = "mqtts" if self.tls is not None else "mqtt"
        try:
            self.client.connect(self.address, self.port, keepalive=self.keepalive)
        except (OSError, ssl.SSLError) as exc:
            raise tls_failure(exc, self.address, self.port, self.ca_file, self.what) from None
        self.client.loop_start()
        with self._cond:
            self._cond.wait_for(lambda: self.connack is not None or self.disconnect_rc is not None, timeout)
        if self.connack == 0:
            return
        self.close()
        where = f"{scheme}://{self.address}:{self.port}"
        if self.connack is not None:
            raise CommandError(f"{self.what} refused the connection at {where}: {connack_text(self.connack)}")
        if self.disconnect_rc is not None:
            raise CommandError(f"{self.what} at {where} closed the connection without answering CONNECT")
        raise CommandError(f"{self.what} at {where} sent no CONNACK within {timeout:g} s")

    @property
    def connected(self) -> bool:
        return self.connack == 0 and self.disconnect_rc is None

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> int:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != 0:
            raise CommandError(f"cannot publish to {self.what}: the connection is closed")
        return info.mid

    def wait_acked(self, mids: list[int], timeout: float) -> bool:
        """True when every mid is acknowledged; False at timeout or when the connection closed."""
        with self._cond:
            return self._cond.wait_for(
                lambda: set(mids) <= self.acked or self.disconnect_rc is not None, timeout
            ) and set(mids) <= self.acked

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 15.0) -> None:
        """Subscribe and wait for the SUBACK: what is published after this returns is received."""
        rc, mid = self.client.subscribe(topic, qos)
        with self._cond:
            done = rc == 0 and self._cond.wait_for(lambda: mid in self.subacked or self.disconnect_rc is not None, timeout)
        if not done or mid not in self.subacked:
            raise CommandError(f"{self.what} did not accept a subscription to {topic}")

    def wait_closed(self, timeout: float | None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.disconnect_rc is not None, timeout)

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            # loop_stop joins paho's thread; give a DISCONNECT a moment to leave first.
            deadline = time.monotonic() + 2
            while self.disconnect_rc is None and self.connack == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            self.client.loop_stop()


def hub_link(target: HubTarget, username: str | None = None) -> MqttLink:
    """A device's connection to the hub (or its gateway): client id = device id, TLS 1.2."""
    return MqttLink(
        address=target.address,
        port=target.port,
        client_id=target.device_id,
        username=username if username is not None else target.username(),
        password=target.password,
        tls=target.ssl_context(),
        ca_file=target.ca_file,
        what=target.peer,
    )
