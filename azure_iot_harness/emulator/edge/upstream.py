"""The `$upstream` endpoint: forwards what the edge stored to the hub, over MQTT/TLS, and the
children's links to the hub.

edgeHub talks to IoT Hub as the edge device, on behalf of each child: one upstream connection
(a *link*) per leaf device or module, whose username names the child and carries
`auth-chain={child};{edge}`, authenticated with the edge device's own key. Links keep their
session at the hub (clean session 0) and acknowledge what the hub delivers only when the edge
says so. A link a connected child relies on (it subscribed to desired properties, methods or
C2D through the edge) is connected again when it drops, and `on_link_up` says so.

Forwarding runs one *lane* per sender (at most `MAX_LANES` at once): each sends its sender's
messages one at a time, highest priority then oldest first, so one device's order is kept and
one device's trouble never holds back another's messages. The hub's answers are read by
`hub_answers.judge`: the hub unreachable pauses every lane with a growing back-off; a refusal
for one device or one message drops that message with a log line and a counter.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import urllib.parse
from collections.abc import Callable

from ...errors import ConnectRefused
from ..clock import SYSTEM_CLOCK, Clock
from ..mqtt.client import ConnectionLost, MqttClient
from ..mqtt.codec import Publish
from ..protocol.messages import SETTABLE_SYSTEM_PROPERTIES, Telemetry, utc_now_iso
from ..protocol.topics import encode_property_bag
from .hub_answers import Answer, HubAnswer, Verdict, backoff, judge
from .queue import UPSTREAM, EdgeQueues, Queued

log = logging.getLogger("azure_iot_harness.edge")

API_VERSION = "2021-04-12"
MAX_LANES = 10  # edgeHub's default upstream fan-out factor
PUBACK_TIMEOUT = 30.0
_WIRE_KEYS = {name: key for key, name in SETTABLE_SYSTEM_PROPERTIES.items()}
_LINK_ERRORS = (OSError, ConnectionLost, asyncio.TimeoutError)


def telemetry_topic(t: Telemetry) -> str:
    """The hub topic for a message, its properties back in a property bag."""
    props: list[tuple[str, str | None]] = [(_WIRE_KEYS[k], v) for k, v in t.system_properties.items() if k in _WIRE_KEYS]
    props += list(t.properties.items())
    base = f"devices/{t.device_id}/" + (f"modules/{t.module_id}/" if t.module_id else "") + "messages/events/"
    return base + encode_property_bag(props)


def client_id_of(device_id: str, module_id: str | None) -> str:
    return f"{device_id}/{module_id}" if module_id else device_id


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
        edge_problem: Callable[[], str | None] = lambda: None,
        device_problem: Callable[[str], str | None] = lambda client_id: None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """`edge_problem()` / `device_problem(client_id)`: what the edge's view of the registry
        says is wrong with the edge device / a sender (None: nothing), to read refusals by."""
        self.edge_device_id = edge_device_id
        self.hub_host = hub_host
        self.hub_address = hub_address
        self.hub_port = hub_port
        self.ssl_context = ssl_context
        self.token = token
        self.queues = queues
        self.edge_problem = edge_problem
        self.device_problem = device_problem
        self.clock = clock
        self._links: dict[str, MqttClient] = {}
        self._connecting: dict[str, asyncio.Lock] = {}
        self._relayed: dict[str, dict[str, int]] = {}  # client id -> filters subscribed for the child
        # client id -> the Plug and Play model id the child announced, passed on in the username
        self.model_ids: dict[str, str] = {}
        self._kept: set[str] = set()  # links connected again when they drop
        self._watchers: dict[str, asyncio.Task] = {}
        self._task: asyncio.Task | None = None
        self._lanes: dict[str, asyncio.Task] = {}
        self._kick = asyncio.Event()
        self._paused_until = 0.0  # loop time: the hub unreachable, every lane waits
        self._failures = 0  # pauses in a row
        self._device_backoff: dict[str, tuple[float, int]] = {}  # client id -> (loop time, attempts)
        self.state = "idle"  # idle (nothing forwarded yet), online, unreachable, refused
        self.state_since = utc_now_iso(clock.now())
        self.last_error: str | None = None
        self.forwarded = 0
        self.suspended = False  # an edge-upstream-suspend fault: the hub is out of reach
        # What the hub sends on a child's link goes here: on_message(client_id, publish).
        self.on_message: Callable[[str, Publish], None] = lambda client_id, pub: None
        # A link connected again after it dropped: on_link_up(client_id).
        self.on_link_up: Callable[[str], None] = lambda client_id: None
        queues.on_enqueued(lambda endpoint: self._kick.set() if endpoint == UPSTREAM else None)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name="edge-upstream")

    async def stop(self) -> None:
        if self._task is not None:  # the pump first, so no lane is started meanwhile
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        tasks = [*self._lanes.values(), *self._watchers.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._kept.clear()
        for client in list(self._links.values()):
            await client.disconnect()
        self._links.clear()

    def suspend(self) -> None:
        """Lose the hub (a fault): every link drops, none connects until resume()."""
        self.suspended = True
        for client in list(self._links.values()):
            client.drop("the edge's upstream is suspended")

    def resume(self) -> None:
        self.suspended = False
        self._paused_until = 0.0
        self._kick.set()

    # ---- links ----------------------------------------------------------------------------------

    async def client(self, device_id: str, module_id: str | None) -> MqttClient:
        """The open link for one child, connecting when there is none. ConnectRefused with the
        hub's CONNACK code, OSError/ConnectionLost/TimeoutError when it cannot be reached."""
        client_id = client_id_of(device_id, module_id)
        client = self._links.get(client_id)
        if client is not None and client.connected:
            return client
        if self.suspended:
            raise ConnectionRefusedError(f"the edge's upstream is suspended: {self.hub_host} is out of reach")
        async with self._connecting.setdefault(client_id, asyncio.Lock()):
            client = self._links.get(client_id)
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
                clean_session=False,
                auto_ack=False,
            )
            await client.connect()
            self._links[client_id] = client
            filters = self._relayed.get(client_id)
            if filters:  # a new link: the child's subscriptions again
                await client.subscribe(list(filters.items()))
        if client_id in self._kept:
            self._watch(client_id, client)
        return client

    def link(self, client_id: str) -> MqttClient | None:
        """The child's link when it is connected now."""
        client = self._links.get(client_id)
        return client if client is not None and client.connected else None

    async def relay(self, device_id: str, module_id: str | None, filters: list[tuple[str, int]], *, keep: bool = True) -> None:
        """Subscribe on the child's link to `filters` (kept for every later link); with `keep`,
        what the child subscribed to at the edge, the link is connected again when it drops. A
        hub that cannot be reached now gets them when it returns."""
        client_id = client_id_of(device_id, module_id)
        known = self._relayed.setdefault(client_id, {})
        new = [(t, q) for t, q in filters if known.get(t) != q]
        known.update(dict(filters))
        if keep:
            self.keep(client_id)
        if not new:
            return
        try:
            client = self.link(client_id)
            if client is not None:
                await client.subscribe(new)
            else:
                await self.client(device_id, module_id)
        except (*_LINK_ERRORS, ConnectRefused) as exc:
            log.warning("%s: subscriptions not relayed yet, the hub is unreachable: %s", client_id, exc)

    def keep(self, client_id: str) -> None:
        """Connect the child's link again whenever it drops, while the child is connected."""
        self._kept.add(client_id)
        client = self._links.get(client_id)
        if client is not None:
            self._watch(client_id, client)
        elif client_id in self._relayed:
            self._revive(client_id)

    def release(self, client_id: str) -> None:
        """The child left: its link stays while it lasts, but is no longer connected again."""
        self._kept.discard(client_id)

    async def drop(self, client_id: str) -> None:
        """The child lost its right to connect: close its link and forget its subscriptions."""
        self._kept.discard(client_id)
        self._relayed.pop(client_id, None)
        watcher = self._watchers.pop(client_id, None)
        if watcher is not None:
            watcher.cancel()
        client = self._links.pop(client_id, None)
        if client is not None:
            await client.disconnect()

    def ack(self, client_id: str, packet_id: int) -> bool:
        """PUBACK a delivery on the child's link; False when the link is gone (the hub delivers
        the message again on a later link)."""
        client = self.link(client_id)
        if client is None:
            return False
        try:
            client.ack(packet_id)
        except ConnectionLost:
            return False
        return True

    def _watch(self, client_id: str, client: MqttClient) -> None:
        running = self._watchers.get(client_id)
        if running is not None and not running.done():
            return

        async def watch() -> None:
            await client.closed.wait()
            self._watchers.pop(client_id, None)
            if client_id in self._kept:
                self._revive(client_id)

        self._watchers[client_id] = asyncio.create_task(watch(), name=f"edge-link-watch {client_id}")

    def _revive(self, client_id: str) -> None:
        running = self._watchers.get(client_id)
        if running is not None and not running.done():
            return

        async def revive() -> None:
            device_id, _, module_id = client_id.partition("/")
            attempt = 0
            while client_id in self._kept:
                await asyncio.sleep(max(backoff(attempt), self._paused_until - asyncio.get_running_loop().time()))
                attempt += 1
                try:
                    client = await self.client(device_id, module_id or None)
                except ConnectRefused as exc:
                    log.warning("%s: the hub refuses its link: %s", client_id, exc)
                    continue
                except _LINK_ERRORS:
                    continue
                self._watchers.pop(client_id, None)
                self._watch(client_id, client)
                self.on_link_up(client_id)
                return

        self._watchers[client_id] = asyncio.create_task(revive(), name=f"edge-link-revive {client_id}")

    # ---- forwarding -----------------------------------------------------------------------------

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._kick.clear()
            wait = self._dispatch(loop.time())
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that comes
            # as the event is set (the lanes set it as they end), and stop() would wait forever.
            try:
                async with asyncio.timeout(wait):
                    await self._kick.wait()
            except TimeoutError:
                pass

    def _dispatch(self, now: float) -> float:
        """Start a lane for each sender with messages that may go now; seconds until the
        next back-off ends (or a minute: an enqueue wakes the pump anyway, TTLs need a look)."""
        if now < self._paused_until:
            return self._paused_until - now
        waits = [60.0]
        for sender in self.queues.senders(UPSTREAM):
            if sender in self._lanes:
                continue
            until, _ = self._device_backoff.get(sender, (0.0, 0))
            if until > now:
                waits.append(until - now)
                continue
            if len(self._lanes) >= MAX_LANES:
                break
            self._lanes[sender] = asyncio.create_task(self._lane(sender), name=f"edge-upstream {sender}")
        return min(waits)

    async def _lane(self, sender: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            while loop.time() >= self._paused_until and self._device_backoff.get(sender, (0.0, 0))[0] <= loop.time():
                item = self.queues.next(UPSTREAM, sender)
                if item is None:
                    return
                await self._forward(item)
        except Exception:  # the pump must live on: nothing may be lost
            log.exception("upstream: unexpected error forwarding %s's messages; retrying", sender)
            self._device_backoff[sender] = (loop.time() + 1.0, 0)
        finally:
            self._lanes.pop(sender, None)
            self._kick.set()

    async def _forward(self, item: Queued) -> None:
        item.in_flight = True
        try:
            answer = await self._send(item.telemetry)
        finally:
            item.in_flight = False
        loop = asyncio.get_running_loop()
        if answer is None:
            self._device_backoff.pop(item.sender, None)
            self._failures = 0
            item.closes = 0
            self.forwarded += 1
            self._set_state("online", None)
            await self.queues.done(item)
            return
        if answer.kind is Answer.CLOSED:
            item.closes += 1
        verdict = judge(
            answer,
            edge_problem=self.edge_problem(),
            device_problem=self.device_problem(item.sender),
            closes_in_a_row=item.closes,
        )
        if verdict is Verdict.RETRY:
            if self._failures == 0 and answer.kind is Answer.REFUSED:
                log.warning("upstream: the hub refuses the edge device itself (%s; %s); every message is kept", answer, self.edge_problem())
            elif self._failures == 0:
                log.warning("upstream (the hub) unreachable, every message is kept until it returns: %s", answer)
            self._paused_until = loop.time() + backoff(self._failures)
            self._failures += 1
            self._set_state("refused" if answer.kind is Answer.REFUSED else "unreachable", str(answer))
        elif verdict is Verdict.RETRY_DEVICE:
            _, attempts = self._device_backoff.get(item.sender, (0.0, 0))
            if attempts == 0:
                log.warning("upstream: %s's message not taken (%s); retrying that device with back-off", item.sender, answer)
            self._device_backoff[item.sender] = (loop.time() + backoff(attempts), attempts + 1)
        else:
            reason = "hub_refused_device" if verdict is Verdict.DROP_DEVICE else "hub_refused_message"
            log.warning(
                "upstream: message %d from %s dropped, %s (%s)%s",
                item.seq,
                item.sender,
                verdict.value,
                answer,
                f"; {self.device_problem(item.sender)}" if verdict is Verdict.DROP_DEVICE and self.device_problem(item.sender) else "",
            )
            self.queues.counters.dropped(reason, item.sender)
            self._device_backoff.pop(item.sender, None)
            self._set_state("online", None)  # the hub answered: it is there
            await self.queues.done(item)

    async def _send(self, t: Telemetry) -> HubAnswer | None:
        """Forward one message; None when the hub acknowledged it, else its answer."""
        try:
            client = await self.client(t.device_id, t.module_id)
            fut = client.publish(telemetry_topic(t), t.body, 1)
        except ConnectRefused as exc:
            return HubAnswer(Answer.REFUSED, exc.reason, exc.return_code)
        except _LINK_ERRORS as exc:
            return HubAnswer(Answer.UNREACHABLE, str(exc) or type(exc).__name__)
        try:
            async with asyncio.timeout(PUBACK_TIMEOUT):
                await fut
        except ConnectionLost as exc:
            return HubAnswer(Answer.CLOSED, str(exc))
        except TimeoutError:
            return HubAnswer(Answer.NO_ANSWER, f"no PUBACK within {PUBACK_TIMEOUT:.0f} s")
        return None

    def _set_state(self, state: str, error: str | None) -> None:
        if state == "online" and self.state in ("unreachable", "refused"):
            log.info("upstream (the hub) takes messages again: forwarding stored messages")
        if state != self.state:
            self.state, self.state_since = state, utc_now_iso(self.clock.now())
        if error is not None:
            self.last_error = error

    def status(self) -> dict:
        loop = asyncio.get_running_loop()
        now = loop.time()
        return {
            "state": self.state,
            "since": self.state_since,
            "lastError": self.last_error,
            "retryInSeconds": round(max(0.0, self._paused_until - now), 3),
            "forwarded": self.forwarded,
            "devicesBackingOff": {s: round(u - now, 3) for s, (u, _) in self._device_backoff.items() if u > now},
            "links": sorted(c for c, link in self._links.items() if link.connected),
        }
