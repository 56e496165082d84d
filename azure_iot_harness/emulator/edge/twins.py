"""Children's twins at the edge, as edgeHub keeps them: through the hub when it answers, from
the edge's cache when it does not.

- GET: asked of the hub over the child's link (after the reported patches still owed to it);
  its answer refreshes the cache. Hub unreachable: answered 200 from the cache (an empty twin
  when nothing was ever cached), as edgeHub does.
- Reported PATCH: checked against IoT Hub's rules, merged into the cache and kept in the store;
  then passed on to the hub (with any patches still owed before it, in order). The child gets
  204 with the hub's `$version` once the hub took it, or, with the hub unreachable, 204 without
  `$version` at once (as edgeHub answers every reported patch, from its store) and the patches
  reach the hub in order as soon as the child's link is up. A patch the hub refuses for good
  (4xx but 429) is dropped with a log line and counted.
- Desired: patches the hub relays keep the cache current; when a child's link comes back, the
  edge asks for the twin again and sends the child one patch with what changed meanwhile.

The edge's own requests on a link carry request ids of its own (`edge-…`) and their answers
stay at the edge.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable

from ...errors import ConnectRefused
from ..mqtt.client import ConnectionLost
from ..protocol import twin as tw
from ..protocol.errors import error_code
from ..protocol.subscriptions import TWIN_RESPONSES
from .counters import EdgeCounters
from .hub_answers import backoff
from .tasks import Tasks
from .twin_cache import Key, TwinCache, desired_diff, from_device_view
from .upstream import Upstream, client_id_of

log = logging.getLogger("azure_iot_harness.edge")

TWIN_TIMEOUT = 10.0
SendDesired = Callable[[dict, int], None]


class HubUnavailable(Exception):
    """The hub did not answer a twin request (unreachable, the link refused or lost)."""


def _name(key: Key) -> str:
    return client_id_of(*key)


def _parse_response(topic: str) -> tuple[int, str, int | None] | None:
    """`$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]` → (status, rid, version)."""
    rest = topic[len("$iothub/twin/res/") :]
    status_text, _, query = rest.partition("/")
    params = dict(part.partition("=")[::2] for part in query.lstrip("?").split("&") if part)
    if not status_text.isdigit() or "$rid" not in params:
        return None
    version = params.get("$version", "")
    return int(status_text), params["$rid"], int(version) if version.isdigit() else None


class EdgeTwins:
    def __init__(self, cache: TwinCache, upstream: Upstream, counters: EdgeCounters) -> None:
        self.cache = cache
        self.upstream = upstream
        self.counters = counters
        self._locks: dict[Key, asyncio.Lock] = {}
        self._waiting: dict[str, asyncio.Future] = {}  # the edge's request id -> (status, body)
        self._rids = itertools.count(1)
        self._syncing: dict[Key, asyncio.Task] = {}
        self.tasks = Tasks()

    async def load(self) -> None:
        """Read the cache; patches a previous run still owed the hub go out when it answers."""
        await self.cache.load()
        for key in self.cache.keys_with_pending():
            self.sync_later(key)

    async def stop(self) -> None:
        await self.tasks.stop()

    # ---- a child's requests ---------------------------------------------------------------------

    async def get(self, key: Key) -> tuple[int, bytes]:
        """(status, body) of a twin GET."""
        async with self._lock(key):
            try:
                await self._flush(key)
                status, body, _ = await self._request(key, "$iothub/twin/GET/", b"")
            except HubUnavailable as exc:
                log.info("%s: twin GET answered from the edge's cache, the hub does not answer: %s", _name(key), exc)
                return 200, json.dumps(tw.device_view(self.cache.twin(key) or tw.new_twin())).encode()
            if status == 200:
                try:
                    await self.cache.from_hub(key, from_device_view(json.loads(body)))
                except ValueError:
                    pass
            return status, body

    async def patch_reported(self, key: Key, payload: bytes) -> tuple[int, bytes, int | None]:
        """(status, body, `$version`) of a reported-properties PATCH: 204 once the hub took it
        (its version) or, the hub unreachable, once it is kept (no version); 400 when IoT Hub
        would refuse it."""
        try:
            await self.cache.reported_patch(key, tw.parse_reported_patch(payload))
        except tw.TwinError as exc:
            log.warning("%s: reported patch refused with 400: %s", _name(key), exc)
            return 400, json.dumps({"errorCode": error_code("ArgumentInvalid"), "message": str(exc)}).encode(), None
        try:
            async with self._lock(key):
                answer = await self._flush(key)
        except HubUnavailable as exc:
            log.info("%s: reported patch kept at the edge, the hub does not answer: %s", _name(key), exc)
            self.sync_later(key)
            return 204, b"", None
        return answer or (204, b"", None)

    def ensure_cached(self, key: Key) -> None:
        """Fetch the twin into the cache when there is none (a child that subscribed to desired
        properties: its changes during an outage are found by comparing with it)."""
        if self.cache.twin(key) is None:
            self.tasks.spawn(self._refresh(key, None))

    # ---- from the hub ---------------------------------------------------------------------------

    def answer(self, topic: str, payload: bytes) -> bool:
        """A twin response on a link: True when it answers one of the edge's requests."""
        parsed = _parse_response(topic)
        if parsed is None:
            return False
        status, rid, version = parsed
        fut = self._waiting.get(rid)
        if fut is None:
            return False
        if not fut.done():
            fut.set_result((status, payload, version))
        return True

    def desired_changed(self, key: Key, payload: bytes, version: int | None) -> None:
        try:
            patch = json.loads(payload)
        except ValueError:
            return
        if isinstance(patch, dict):
            self.tasks.spawn(self.cache.desired_patch(key, patch, version))

    def link_up(self, key: Key, send_desired: SendDesired | None) -> None:
        """The child's link is back: owed patches out, and what changed meanwhile in."""
        self.tasks.spawn(self._refresh(key, send_desired))

    async def forget(self, key: Key) -> None:
        owed = len(self.cache.pending(key))
        if owed:
            log.warning("%s was deleted: %d reported patch(es) it owed the hub are dropped", _name(key), owed)
            self.counters.dropped("twin_patch_refused", _name(key), owed)
        task = self._syncing.pop(key, None)
        if task is not None:
            task.cancel()
        await self.cache.forget(key)

    def status(self) -> dict:
        return {"pendingReportedPatches": self.cache.pending_counts()}

    # ---- plumbing -------------------------------------------------------------------------------

    def sync_later(self, key: Key) -> None:
        """Send the owed reported patches, retrying with back-off until the hub takes them."""
        running = self._syncing.get(key)
        if running is not None and not running.done():
            return

        async def sync() -> None:
            attempt = 0
            while self.cache.pending(key):
                try:
                    async with self._lock(key):
                        await self._flush(key)
                except HubUnavailable:
                    await asyncio.sleep(backoff(attempt))
                    attempt += 1
            self._syncing.pop(key, None)

        self._syncing[key] = self.tasks.spawn(sync(), name=f"edge-twin-sync {_name(key)}")

    async def _refresh(self, key: Key, send_desired: SendDesired | None) -> None:
        async with self._lock(key):
            before = self.cache.twin(key)
            try:
                await self._flush(key)
                status, body, _ = await self._request(key, "$iothub/twin/GET/", b"")
                if status != 200:
                    return
                new = from_device_view(json.loads(body))
            except (HubUnavailable, ValueError):
                return
            await self.cache.from_hub(key, new)
        if send_desired is not None and before is not None:
            diff = desired_diff(before["desired"], new["desired"])
            if diff:
                log.info("%s: desired properties changed while its link was down; sending the difference", _name(key))
                send_desired(diff, new["desiredVersion"])

    async def _flush(self, key: Key) -> tuple[int, bytes, int | None] | None:
        """Send the owed reported patches in order (the caller holds the key's lock); the hub's
        answer to the last one."""
        answer = None
        for patch in self.cache.pending(key):
            answer = await self._request(key, "$iothub/twin/PATCH/properties/reported/", json.dumps(patch).encode())
            status, body, _ = answer
            if status == 204:
                await self.cache.confirmed(key)
            elif 400 <= status < 500 and status != 429:
                log.warning("%s: the hub refused a reported patch with %d, dropped: %s", _name(key), status, body[:200])
                self.counters.dropped("twin_patch_refused", _name(key))
                await self.cache.confirmed(key)
            else:
                raise HubUnavailable(f"the hub answered {status}")
        return answer

    async def _request(self, key: Key, topic: str, body: bytes) -> tuple[int, bytes, int | None]:
        """One twin request of the edge's over the child's link, and the hub's answer (status,
        body, `$version`)."""
        device_id, module_id = key
        try:
            client = await self.upstream.client(device_id, module_id)
            await self.upstream.relay(device_id, module_id, [(TWIN_RESPONSES, 0)], keep=False)
        except (TimeoutError, ConnectRefused, OSError, ConnectionLost) as exc:
            raise HubUnavailable(str(exc) or type(exc).__name__) from None
        rid = f"edge-{next(self._rids)}"
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        closed = asyncio.ensure_future(client.closed.wait())
        try:
            client.publish(f"{topic}?$rid={rid}", body, 0)
            done, _ = await asyncio.wait({fut, closed}, timeout=TWIN_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            if fut not in done:
                raise HubUnavailable("the link closed before the hub answered" if closed in done else "no answer in time")
            return fut.result()
        except ConnectionLost as exc:
            raise HubUnavailable(str(exc)) from None
        finally:
            closed.cancel()
            self._waiting.pop(rid, None)

    def _lock(self, key: Key) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())
