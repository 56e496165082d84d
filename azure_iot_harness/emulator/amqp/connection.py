"""One AMQP connection of the service side: links routed by address, CBS, `$management`, the
Event Hubs-compatible partitions, the IoT Hub-host redirect, C2D sending and feedback.

It drives an `Engine` (proton, sans-IO) and writes its output to a `Sink`; the work that needs
the store (reading events, queueing a C2D message) runs in tasks, which change proton's state
and flush when done. Everything runs on the emulator's event loop.

A link attached on the strength of a token lives as long as some token covers it: when the last
one expires without a renewal (a `$cbs` put-token before expiry, as the SDKs do), the link is
detached with `amqp:unauthorized-access`, as Azure does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from proton import (
    UNDESCRIBED,
    Array,
    Condition,
    Data,
    Delivery,
    Described,
    Endpoint,
    Event,
    Link,
    Message,
    int32,
    symbol,
)

from ...config import SERVICE_CONNECT
from ...errors import ServiceError
from .addresses import Node, classify
from .claims import Claim, token_claim
from .engine import Engine
from .positions import EARLIEST, SELECTOR_KEY, Position, PositionError
from .positions import parse as parse_position

if TYPE_CHECKING:
    from .service import AmqpService

log = logging.getLogger("azure_iot_harness.amqp")

REQUEST_CREDIT = 100  # credit given to links that carry requests (CBS, $management, C2D)

# Azure's AMQP error conditions.
UNAUTHORIZED = "amqp:unauthorized-access"
NOT_FOUND = "amqp:not-found"
REDIRECT = "amqp:link:redirect"
STOLEN = "amqp:link:stolen"
ARGUMENT_ERROR = "com.microsoft:argument-error"
OUT_OF_RANGE = "com.microsoft:argument-out-of-range"
NOT_IMPLEMENTED = "amqp:not-implemented"


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class AmqpConnection:
    def __init__(self, service: AmqpService, sink: Sink, *, peer: str, port: int, claims: list[Claim] | None = None) -> None:
        self.service = service
        self.sink = sink
        self.peer = peer
        self.port = port  # the listener's port, where a redirect sends the client back
        self.claims: list[Claim] = list(claims or [])
        self.engine = Engine(self._on_event)
        self._reply_links: dict[str, Link] = {}  # reply-to address → our sender link
        self._node_senders: dict[str, Link] = {}  # node kind ($cbs, $management) → our sender link
        self._waiting_replies: list[tuple[Message, Message, str]] = []
        self._tasks: set[asyncio.Task] = set()
        self._link_closers: dict[str, Callable[[], None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._guarded: dict[Link, str] = {}  # links attached on a token's authority → their path
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._busy = False  # inside proton's event processing
        self.closed = False

    # ---- bytes in and out ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._busy = True
        try:
            self.engine.receive(data)
        finally:
            self._busy = False
        self.flush()

    def eof_received(self) -> None:
        self._busy = True
        try:
            self.engine.receive_eof()
        finally:
            self._busy = False
        self.flush()

    def flush(self) -> None:
        """Handle proton's events, write what it has to send, set the keep-alive timer. Called
        from inside an event handler it does nothing: the running pass picks the work up."""
        if self.closed or self._busy:
            return
        self._busy = True
        try:
            self.engine.process()
            out = self.engine.output()
        finally:
            self._busy = False
        if out:
            self.sink.write(out)
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.engine.tick(loop.time())
        if deadline:
            self._timer = loop.call_at(deadline, self.flush)
        if self.engine.finished:
            self.sink.close()

    def connection_lost(self) -> None:
        """The socket is gone: stop every task and forget every link."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        self._guarded.clear()
        for task in list(self._tasks):
            task.cancel()
        for closer in list(self._link_closers.values()):
            closer()
        self._link_closers.clear()

    def spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("AMQP %s: %s", self.peer, task.exception(), exc_info=task.exception())
        self.flush()

    # ---- proton events -------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        kind = event.type
        if kind == Event.CONNECTION_REMOTE_OPEN:
            conn = event.connection
            conn.container = f"azure-iot-harness-{uuid.uuid4().hex[:12]}"
            conn.open()
        elif kind == Event.SESSION_REMOTE_OPEN:
            event.session.open()
        elif kind == Event.LINK_REMOTE_OPEN:
            self._on_attach(event.link)
        elif kind == Event.LINK_REMOTE_CLOSE or kind == Event.LINK_REMOTE_DETACH:
            self._forget(event.link)
            if event.link.state & Endpoint.LOCAL_ACTIVE:
                event.link.close()
        elif kind == Event.SESSION_REMOTE_CLOSE:
            event.session.close()
        elif kind == Event.CONNECTION_REMOTE_CLOSE:
            event.connection.close()
        elif kind == Event.LINK_FLOW:
            handler = getattr(event.link, "harness_on_flow", None)
            if handler is not None:
                handler()
        elif kind == Event.DELIVERY:
            self._on_delivery(event.delivery)

    def _forget(self, link: Link) -> None:
        self._guarded.pop(link, None)
        closer = self._link_closers.pop(getattr(link, "harness_key", ""), None)
        if closer is not None:
            closer()
        for table in (self._reply_links, self._node_senders):
            for key, value in list(table.items()):
                if value is link:
                    del table[key]

    def on_link_closed(self, link: Link, closer: Callable[[], None]) -> None:
        """Run `closer` when the link or the connection ends."""
        key = uuid.uuid4().hex
        link.harness_key = key  # proton keeps attributes set on a wrapper with the link
        self._link_closers[key] = closer

    @staticmethod
    def on_flow(link: Link, handler: Callable[[], None]) -> None:
        """Run `handler` when the peer gives the link credit."""
        link.harness_on_flow = handler

    # ---- attach --------------------------------------------------------------------------

    def _on_attach(self, link: Link) -> None:
        address = link.remote_source.address if link.is_sender else link.remote_target.address
        node = classify(address)
        link.source.address = link.remote_source.address
        link.target.address = link.remote_target.address
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        if node.kind in ("cbs", "management"):
            self._attach_request_node(link, node)
            return
        if node.kind == "unknown":
            self.refuse(link, NOT_FOUND, f"The messaging entity '{node.path}' could not be found.")
            return
        if not self.authorized(node.path):
            self.refuse(link, UNAUTHORIZED, f"Unauthorized access to '{node.path}': put a token with {SERVICE_CONNECT} on $cbs first.")
            return
        if node.kind != "events":
            self._guarded[link] = node.path
            self._watch_expiry()
        if node.kind == "events":
            self._redirect(link, node)
        elif node.kind == "partition" and link.is_sender:
            self.service.eventhub.attach_receiver(self, link, node, self._position(link), self._epoch(link))
        elif node.kind == "devicebound" and link.is_receiver:
            link.open()
            link.flow(REQUEST_CREDIT)
        elif node.kind == "feedback" and link.is_sender:
            self.service.feedback.attach(self, link)
        elif node.kind == "filenotifications" and link.is_sender:
            link.open()  # file uploads are not emulated: no notification ever comes
        else:
            self.refuse(link, NOT_FOUND, f"'{node.path}' cannot be attached as a {'receiver' if link.is_sender else 'sender'}.")

    def _attach_request_node(self, link: Link, node: Node) -> None:
        key = node.kind if not node.entity else f"{node.entity.lower()}/$management"
        if link.is_sender:  # the client's receiver: where our replies go
            self._node_senders[key] = link
            if link.remote_target.address:
                self._reply_links[link.remote_target.address] = link
            link.open()
            self._send_waiting_replies()
        else:
            link.open()
            link.flow(REQUEST_CREDIT)

    def refuse(self, link: Link, condition: str, description: str, info: dict | None = None) -> None:
        log.info("AMQP %s: attach of %s refused: %s %s", self.peer, link.name, condition, description)
        if link.is_sender:
            link.source.address = None
        else:
            link.target.address = None
        link.condition = Condition(condition, description, info)
        link.open()
        link.close()

    def detach(self, link: Link, condition: str, description: str) -> None:
        if link.state & Endpoint.LOCAL_ACTIVE:
            link.condition = Condition(condition, description)
            link.close()
            self.flush()

    def authorized(self, path: str) -> bool:
        now = self.service.clock.time()
        return any(c.covers(path, SERVICE_CONNECT, now) for c in self.claims)

    # ---- token expiry ----------------------------------------------------------------------

    def _covered_until(self, path: str, now: float) -> float:
        """When the last token covering `path` expires (now or earlier: none covers it)."""
        return max((c.expiry for c in self.claims if c.covers(path, SERVICE_CONNECT, now)), default=now)

    def _watch_expiry(self) -> None:
        """Set the timer for the next moment a link loses its last token (after an attach or a put-token)."""
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        now = self.service.clock.time()
        self.claims = [c for c in self.claims if c.expiry > now]
        ends = [self._covered_until(path, now) for path in self._guarded.values()]
        soonest = min((e for e in ends if e != float("inf")), default=None)
        if soonest is not None and not self.closed:
            # a little after the expiry, so the token is past `se` by the clock that judges it
            self._expiry_timer = asyncio.get_running_loop().call_later(max(0.0, soonest - now) + 0.01, self._expire)

    def _expire(self) -> None:
        self._expiry_timer = None
        now = self.service.clock.time()
        for link, path in list(self._guarded.items()):
            if not self.authorized(path):
                expired = max((c.expiry for c in self.claims if c.covers(path, SERVICE_CONNECT, float("-inf"))), default=now)
                when = dt.datetime.fromtimestamp(expired, dt.UTC).strftime("%m/%d/%Y %H:%M:%S")
                log.info("AMQP %s: the token for %s expired; link %s detached", self.peer, path, link.name)
                del self._guarded[link]
                self.detach(link, UNAUTHORIZED, f"ExpiredToken: The token is expired. Expiration time: '{when}'.")
        self._watch_expiry()
        self.flush()

    def _redirect(self, link: Link, node: Node) -> None:
        """IoT Hub's answer to a receiver on `messages/events`: go to the Event Hubs-compatible
        endpoint, keeping the rest of the address (consumer group and partition, `$management`)."""
        rest = node.path[len("messages/events") :].lstrip("/") or "$management"
        host = self.service.settings.host
        info = {
            symbol("hostname"): host,
            symbol("network-host"): host,
            symbol("port"): int32(self.port),
            symbol("address"): f"amqps://{host}:{self.port}/{self.service.settings.eventhub_name}/{rest}",
        }
        self.refuse(link, REDIRECT, "The link is redirected to the Event Hubs-compatible endpoint.", info)

    @staticmethod
    def _position(link: Link) -> Position | PositionError:
        filters = link.remote_source.filter
        if filters is None:
            return EARLIEST
        filters.rewind()
        if not filters.next():
            return EARLIEST
        try:
            table = filters.get_object()
        except Exception as exc:  # proton raises several types on odd input
            return PositionError(f"unreadable filter: {exc}")
        if not isinstance(table, dict):
            return EARLIEST
        for key, value in table.items():
            expression = value.value if isinstance(value, Described) else value
            if str(key) == SELECTOR_KEY or isinstance(value, Described):
                try:
                    return parse_position(str(expression))
                except PositionError as exc:
                    return exc
        return EARLIEST

    @staticmethod
    def _epoch(link: Link) -> int | None:
        props = link.remote_properties or {}
        for key, value in props.items():
            if str(key) == "com.microsoft:epoch" and isinstance(value, int):
                return int(value)
        return None

    # ---- deliveries ----------------------------------------------------------------------

    def _on_delivery(self, dlv: Delivery) -> None:
        link = dlv.link
        if link.is_sender:
            on_update = getattr(dlv, "harness_on_update", None)
            if on_update is not None and (dlv.remote_state or dlv.settled):
                dlv.harness_on_update = None
                on_update(dlv)
            if dlv.settled:  # the peer settled: forget it on our side too
                dlv.settle()
            return
        if not dlv.readable or dlv.partial:
            return
        data = link.recv(dlv.pending)
        link.advance()
        msg = Message()
        try:
            msg.decode(data)
        except Exception as exc:  # a message proton cannot decode: reject it, keep the link
            dlv.update(Delivery.REJECTED)
            dlv.local.condition = Condition("amqp:decode-error", str(exc))
            dlv.settle()
            return
        node = classify(link.remote_target.address)
        if link.credit < REQUEST_CREDIT // 2:
            link.flow(REQUEST_CREDIT - link.credit)
        if node.kind == "cbs":
            self._put_token(msg)
            dlv.update(Delivery.ACCEPTED)
            dlv.settle()
        elif node.kind == "management":
            dlv.update(Delivery.ACCEPTED)
            dlv.settle()
            self.spawn(self._management(msg, node))
        elif node.kind == "devicebound":
            self.spawn(self.service.c2d_sender.receive(self, dlv, msg))
        else:
            dlv.update(Delivery.REJECTED)
            dlv.settle()

    def _put_token(self, req: Message) -> None:
        props = req.properties or {}
        operation = props.get("operation")
        if operation != "put-token":
            self.reply(req, status_message(400, f"unsupported $cbs operation {operation!r}"), "cbs")
            return
        try:
            claim = token_claim(str(req.body), hub_host=self.service.settings.host, policies=self.service.policies, now=self.service.clock.time())
        except ServiceError as exc:
            log.info("AMQP %s: put-token refused: %s", self.peer, exc.message)
            self.reply(req, status_message(401, exc.message), "cbs")
            return
        self.claims.append(claim)
        self.reply(req, status_message(200, "OK"), "cbs")
        self._watch_expiry()

    async def _management(self, req: Message, node: Node) -> None:
        key = "management" if not node.entity else f"{node.entity.lower()}/$management"
        entity = node.entity or str((req.properties or {}).get("name") or "")
        if not self.authorized(f"{entity}/$management"):
            self.reply(req, status_message(401, f"Unauthorized access to '{node.path}'."), key)
            return
        resp = await self.service.eventhub.management(req, node)
        self.reply(req, resp, key)
        self.flush()

    def reply(self, req: Message, resp: Message, node_key: str) -> None:
        resp.correlation_id = req.id  # the same AMQP type as the request's id (ulong, uuid, string)
        resp.address = req.reply_to
        self._waiting_replies.append((req, resp, node_key))
        self._send_waiting_replies()

    def _send_waiting_replies(self) -> None:
        """Replies go to the link whose target is the request's reply-to, else to the node's
        reply link; one whose link is not attached yet waits for it."""
        waiting, self._waiting_replies = self._waiting_replies, []
        for req, resp, key in waiting:
            link = self._reply_links.get(req.reply_to or "") or self._node_senders.get(key)
            if link is None:
                self._waiting_replies.append((req, resp, key))
                continue
            self.send(link, resp.encode())

    def send(self, link: Link, payload: bytes, on_update: Callable[[Delivery], None] | None = None) -> Delivery:
        dlv = link.delivery(uuid.uuid4().bytes)
        link.send(payload)
        link.advance()
        if on_update is not None:
            dlv.harness_on_update = on_update
        elif link.snd_settle_mode == Link.SND_SETTLED:
            dlv.settle()
        return dlv


def status_message(code: int, description: str, body: Any = None) -> Message:
    """A `$cbs` or `$management` answer: `status-code` (int32) and `status-description`."""
    return Message(body=body, properties={"status-code": int32(code), "status-description": description})


def string_array(values: list[str]) -> Array:
    return Array(UNDESCRIBED, Data.STRING, *values)


__all__ = ["AmqpConnection", "Sink", "status_message", "string_array"]
