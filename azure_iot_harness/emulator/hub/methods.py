"""Direct methods: a service call becomes a request on the device's connection and waits for
the device's answer, within IoT Hub's timeouts and size limits."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..protocol import jsontext
from ..protocol.errors import hub_error
from ..protocol.subscriptions import METHOD_REQUESTS
from .registry import Key

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger("azure_iot_harness.hub")

METHODS_FILTER = METHOD_REQUESTS
MAX_PAYLOAD = 128 * 1024
RESPONSE_TIMEOUT = (5, 300, 30)  # min, max, default seconds
CONNECT_TIMEOUT = (0, 300, 0)
# Printable US-ASCII without the characters IoT Hub reserves in method names.
_NAME = re.compile(r"[!#%&'*+\-.0-9A-Z^_`a-z|~]{1,128}")


@dataclass(frozen=True)
class MethodCall:
    name: str
    payload: bytes
    response_timeout: int
    connect_timeout: int


def parse_call(body: dict) -> MethodCall:
    """Check a service's `{methodName, payload, responseTimeoutInSeconds, connectTimeoutInSeconds}`."""
    name = body.get("methodName")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise hub_error("ArgumentInvalid", f"methodName {name!r} is missing or has characters IoT Hub does not allow")
    payload = json.dumps(body.get("payload")).encode()
    if len(payload) > MAX_PAYLOAD:
        raise hub_error("RequestEntityTooLarge", f"method payload of {len(payload)} bytes exceeds {MAX_PAYLOAD} bytes")
    return MethodCall(
        name,
        payload,
        _seconds(body, "responseTimeoutInSeconds", RESPONSE_TIMEOUT),
        _seconds(body, "connectTimeoutInSeconds", CONNECT_TIMEOUT),
    )


def _seconds(body: dict, field: str, bounds: tuple[int, int, int]) -> int:
    low, high, default = bounds
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise hub_error("ArgumentInvalid", f"{field} must be an integer from {low} to {high}, not {value!r}")
    return value


class Methods:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._pending: dict[str, tuple[Key, asyncio.Future]] = {}
        self._rids = itertools.count(1)

    async def invoke(self, key: Key, call: MethodCall) -> dict[str, Any]:
        """`{status, payload}` from the device, or DeviceNotOnline (404) / GatewayTimeout (504)."""
        session = await self._wait_for_listener(key, call.connect_timeout)
        if session is None:
            who = f"{key[0]}/{key[1]}" if key[1] else key[0]
            raise hub_error("DeviceNotOnline", f"{who} is not connected or has not subscribed to direct methods")
        rid = format(next(self._rids), "x")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[rid] = (key, fut)
        try:
            session.send_method_request(call.name, rid, call.payload)
            try:
                status, body = await asyncio.wait_for(fut, call.response_timeout)
            except TimeoutError:
                raise hub_error(
                    "GatewayTimeout", f"no answer to method {call.name!r} within {call.response_timeout} s"
                ) from None
        finally:
            self._pending.pop(rid, None)
        if len(body) > MAX_PAYLOAD:
            raise hub_error("RequestEntityTooLarge", f"the device's answer of {len(body)} bytes exceeds {MAX_PAYLOAD} bytes")
        payload: Any = None
        if jsontext.deeper_than(body):
            raise hub_error("ArgumentInvalid", f"the device's answer is JSON nested deeper than {jsontext.MAX_DEPTH} levels")
        if body.strip():
            try:
                payload = jsontext.loads(body)
            except jsontext.JsonError:
                payload = body.decode("utf-8", "replace")
        return {"status": status, "payload": payload}

    def resolve(self, key: Key, rid: str, status: int, body: bytes) -> bool:
        """A device's answer; False when no call of this device waits for `rid`."""
        pending = self._pending.get(rid)
        if pending is None or pending[0] != key or pending[1].done():
            return False
        pending[1].set_result((status, body))
        return True

    async def _wait_for_listener(self, key: Key, timeout: int):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            session = self.hub.sessions.get(key)
            if session is not None and METHODS_FILTER in session.state.subscriptions:
                return session
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(0.05)
