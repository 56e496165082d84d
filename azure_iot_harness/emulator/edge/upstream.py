"""The `$upstream` endpoint: forwards what the edge stored to the hub, in order, over MQTT/TLS.

edgeHub talks to IoT Hub as the edge device, on behalf of each child: one upstream connection
per leaf device or module, whose username names the child and carries
`auth-chain={child};{edge}`, authenticated with the edge device's own key. While the hub cannot
be reached, messages stay queued; they go out oldest first (within a priority) once it can.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import urllib.parse
from collections.abc import Callable

from ...errors import ConnectRefused
from ..mqtt.client import ConnectionLost, MqttClient
from ..mqtt.codec import Publish
from ..protocol.messages import SETTABLE_SYSTEM_PROPERTIES, Telemetry
from ..protocol.topics import encode_property_bag
from .queue import UPSTREAM, EdgeQueues

log = logging.getLogger("azure_iot_harness.edge")

API_VERSION = "2021-04-12"
_WIRE_KEYS = {name: key for key, name in SETTABLE_SYSTEM_PROPERTIES.items()}


def telemetry_topic(t: Telemetry) -> str:
    """The hub topic for a message, its properties back in a property bag."""
    props: list[tuple[str, str | None]] = [(_WIRE_KEYS[k], v) for k, v in t.system_properties.items() if k in _WIRE_KEYS]
    props += list(t.properties.items())
    base = f"devices/{t.device_id}/" + (f"modules/{t.module_id}/" if t.module_id else "") + "messages/events/"
    return base + encode_property_bag(props)


class Upstream:
    def __init__(
        self,
        *,
        edge_device_id: str,
        hub_host: str,
        hub_address: str,
        hub_port: Callable[[], int],
        ssl_context: ssl.SSLContext,
        token: Callable[[], str],
        queues: EdgeQueues,
    ) -> None:
        self.edge_device_id = edge_device_id
        self.hub_host = hub_host
        self.hub_address = hub_address
        self.hub_port = hub_port
        self.ssl_context = ssl_context
        self.token = token
        self.queues = queues
        self._clients: dict[str, MqttClient] = {}
        self._relayed: dict[str, dict[str, int]] = {}  # client id -> filters subscribed for the child
        # client id -> the Plug and Play model id the child announced, passed on in the username
        self.model_ids: dict[str, str] = {}
        self._task: asyncio.Task | None = None
        self.online = asyncio.Event()
        # What the hub sends on a child's link goes here: on_message(client_id, publish).
        self.on_message: Callable[[str, Publish], None] = lambda client_id, pub: None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name="edge-upstream")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for client in list(self._clients.values()):
            await client.disconnect()
        self._clients.clear()

    async def client(self, device_id: str, module_id: str | None) -> MqttClient:
        """The open upstream connection for one child, connecting when there is none."""
        client_id = f"{device_id}/{module_id}" if module_id else device_id
        client = self._clients.get(client_id)
        if client is not None and client.connected:
            return client
        client = MqttClient(
            host=self.hub_address,
            port=self.hub_port(),
            ssl_context=self.ssl_context,
            server_hostname=self.hub_host,
            client_id=client_id,
            username=f"{self.hub_host}/{client_id}/?api-version={API_VERSION}&auth-chain={client_id};{self.edge_device_id}"
            + (f"&model-id={urllib.parse.quote(self.model_ids[client_id], safe='')}" if client_id in self.model_ids else ""),
            password=self.token(),
            on_message=lambda pub: self.on_message(client_id, pub),
        )
        await client.connect()
        self._clients[client_id] = client
        filters = self._relayed.get(client_id)
        if filters:  # a new link: the child's subscriptions again
            await client.subscribe(list(filters.items()))
        return client

    async def relay(self, device_id: str, module_id: str | None, filters: list[tuple[str, int]]) -> None:
        """Subscribe on the child's link to what the child subscribed to at the edge (kept for
        every later link); a hub that cannot be reached now gets them when it returns."""
        client_id = f"{device_id}/{module_id}" if module_id else device_id
        known = self._relayed.setdefault(client_id, {})
        new = [(t, q) for t, q in filters if known.get(t) != q]
        known.update(dict(filters))
        if not new:
            return
        try:
            client = self._clients.get(client_id)
            if client is not None and client.connected:
                await client.subscribe(new)
            else:
                await self.client(device_id, module_id)
        except (TimeoutError, OSError, ConnectionLost, ConnectRefused) as exc:
            log.warning("%s: subscriptions not relayed yet, the hub is unreachable: %s", client_id, exc)

    async def _pump(self) -> None:
        backoff = 0.1
        while True:
            item = self.queues.next(UPSTREAM)
            if item is None:
                await self.queues.wait(UPSTREAM, 1.0)
                continue
            item.in_flight = True
            t = item.telemetry
            try:
                client = await self.client(t.device_id, t.module_id)
                await asyncio.wait_for(client.publish(telemetry_topic(t), t.body, 1), 30)
            except Exception as exc:  # whatever it is, the pump must live on: nothing may be lost
                item.in_flight = False
                if not isinstance(exc, (OSError, ConnectionLost, ConnectRefused, asyncio.TimeoutError)):
                    log.exception("upstream: unexpected error; retrying")
                if self.online.is_set() or backoff == 0.1:
                    log.warning("upstream (the hub) unreachable, messages are kept until it returns: %s", exc)
                self.online.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            item.in_flight = False
            if not self.online.is_set():
                log.info("upstream (the hub) reachable: forwarding stored messages")
                self.online.set()
            backoff = 0.1
            await self.queues.done(item)
