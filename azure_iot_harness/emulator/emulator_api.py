"""The emulator's own REST API under `/_emulator/`, for what Azure offers over AMQP only.

Telemetry is read from Event Hubs in Azure; here it is read from `GET /_emulator/telemetry`
(a page) or `GET /_emulator/telemetry/stream` (newline-delimited JSON, one message a line, as
they are committed). Cloud-to-device messages, which the service SDKs send over AMQP, are sent
with `POST /_emulator/c2d/{deviceId}`; `GET` on the same path lists the device's queue, and
`GET /_emulator/c2d/{deviceId}/history` its last finished messages (outcome, as Azure's feedback
names it: Success, Expired, DeliveryCountExceeded, Purged). With an
edge, `GET /_emulator/edge` shows its state (upstream, queue depths, store use, dropped messages)
and `/_emulator/edge/routes` its routes. All need a service SAS token with ServiceConnect, as
Azure does.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..config import SERVICE_CONNECT
from ..errors import HarnessError
from .edge.routing import Router
from .hub import http
from .hub.c2d import iso_time as c2d_iso
from .hub.context import HubContext
from .hub.service_auth import require
from .protocol.errors import hub_error
from .protocol.messages import Telemetry
from .store import Store

HEARTBEAT_SECONDS = 10.0


@dataclass(frozen=True)
class ApiContext:
    """What the emulator's own API reaches: the hub, the telemetry log, the edge's routes."""

    hub: HubContext
    store: Store
    edge_router: Router | None  # None: the emulator runs without an edge
    edge_status: Callable[[], dict] | None = None  # the edge's status (GET /_emulator/edge)


def routes(ctx: ApiContext) -> list[BaseRoute]:
    hub, store = ctx.hub, ctx.store

    def authorize(request: Request) -> None:
        require(request, hub_host=hub.host, policies=hub.policies, permission=SERVICE_CONNECT, now=hub.clock.time())

    async def read(request: Request) -> Response:
        authorize(request)
        after = http.int_param(request, "after", 0)
        limit = min(http.int_param(request, "limit", 100, low=0), 1000)  # SQLite reads a negative LIMIT as none
        rows = await store.read_telemetry(after=after, device_id=request.query_params.get("deviceId"), limit=limit)
        last = rows[-1][0] if rows else after
        return JSONResponse({"messages": [_entry(seq, t) for seq, t in rows], "last": last})

    async def clear(request: Request) -> Response:
        authorize(request)
        await store.clear_telemetry()
        return Response(status_code=204)

    async def stream(request: Request) -> Response:
        authorize(request)
        device_id = request.query_params.get("deviceId")
        queue: asyncio.Queue[list[tuple[int, Telemetry]]] = asyncio.Queue()
        store.add_telemetry_listener(queue.put_nowait)
        # Listen first, then read the backlog: nothing committed in between is missed.
        if "after" in request.query_params:
            after = http.int_param(request, "after", 0)
        else:
            after = await store.last_telemetry_seq()

        async def lines() -> AsyncIterator[bytes]:
            last = after
            try:
                while True:
                    backlog = await store.read_telemetry(after=last, device_id=device_id, limit=1000)
                    for seq, t in backlog:
                        last = seq
                        yield (json.dumps(_entry(seq, t)) + "\n").encode()
                    if len(backlog) == 1000:
                        continue
                    break
                while True:
                    try:
                        batch = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                    except TimeoutError:
                        yield b"\n"  # keeps proxies and dead-peer detection honest
                        continue
                    for seq, t in batch:
                        if seq > last and (device_id is None or t.device_id == device_id):
                            last = seq
                            yield (json.dumps(_entry(seq, t)) + "\n").encode()
            finally:
                store.remove_telemetry_listener(queue.put_nowait)

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def send_c2d(request: Request) -> Response:
        authorize(request)
        device_id = request.path_params["id"]
        body = await http.json_object(request)
        data, options = _c2d_arguments(body)
        msg = await hub.c2d.send(device_id, data, **options)
        return JSONResponse({"deviceId": device_id, "messageId": msg.message_id, "sequenceNumber": msg.seq}, status_code=201)

    async def pending_c2d(request: Request) -> Response:
        authorize(request)
        device_id = request.path_params["id"]
        if hub.registry.get(device_id) is None:
            raise hub_error("DeviceNotFound", f"device {device_id} not found")
        pending = hub.c2d.pending(device_id)
        now = hub.clock.time()
        return JSONResponse(
            [
                {
                    "messageId": m.message_id,
                    "sequenceNumber": m.seq,
                    "deliveryCount": m.delivery_count,
                    "topic": m.topic(),
                    # Delivered and waiting for the device's PUBACK, or waiting to be delivered.
                    "state": "delivered" if m.lock_until > now else "queued",
                    "ack": m.ack,
                    "enqueuedTime": c2d_iso(m.enqueued),
                    "expiryTime": c2d_iso(m.expiry),
                }
                for m in pending
            ]
        )

    async def c2d_history(request: Request) -> Response:
        authorize(request)
        device_id = request.path_params["id"]
        if hub.registry.get(device_id) is None:
            raise hub_error("DeviceNotFound", f"device {device_id} not found")
        return JSONResponse(hub.c2d.history(device_id))

    async def edge_routes(request: Request) -> Response:
        authorize(request)
        router = ctx.edge_router
        if router is None:
            raise hub_error("NotImplemented", "this emulator runs without an edge (serve --edge)")
        if request.method == "PUT":
            spec = await http.json_object(request)
            try:
                router.replace(spec)
            except HarnessError as exc:
                raise hub_error("ArgumentInvalid", str(exc)) from None
        return JSONResponse(router.describe())

    async def edge_status(request: Request) -> Response:
        authorize(request)
        if ctx.edge_status is None:
            raise hub_error("NotImplemented", "this emulator runs without an edge (serve --edge)")
        return JSONResponse(ctx.edge_status())

    return [
        Route("/_emulator/edge", edge_status, methods=["GET"]),
        Route("/_emulator/edge/routes", edge_routes, methods=["GET", "PUT"]),
        Route("/_emulator/c2d/{id}", send_c2d, methods=["POST"]),
        Route("/_emulator/c2d/{id}", pending_c2d, methods=["GET"]),
        Route("/_emulator/c2d/{id}/history", c2d_history, methods=["GET"]),
        Route("/_emulator/telemetry", read, methods=["GET"]),
        Route("/_emulator/telemetry", clear, methods=["DELETE"]),
        Route("/_emulator/telemetry/stream", stream, methods=["GET"]),
    ]


def _c2d_arguments(body: dict) -> tuple:
    """(body bytes, keyword arguments) of a C2D send request, checked."""
    if ("data" in body) == ("dataBase64" in body):
        raise hub_error("ArgumentInvalid", "give exactly one of data (text) and dataBase64")
    if "data" in body:
        if not isinstance(body["data"], str):
            raise hub_error("ArgumentInvalid", "data must be a string")
        data = body["data"].encode()
    else:
        try:
            data = base64.b64decode(body["dataBase64"], validate=True)
        except (ValueError, TypeError):
            raise hub_error("ArgumentInvalid", "dataBase64 is not valid base64") from None
    props = body.get("properties") or {}
    if not isinstance(props, dict) or not all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in props.items()):
        raise hub_error("ArgumentInvalid", "properties must map names to strings")
    options = {}
    for field, name in (
        ("messageId", "message_id"),
        ("correlationId", "correlation_id"),
        ("userId", "user_id"),
        ("contentType", "content_type"),
        ("contentEncoding", "content_encoding"),
        ("ack", "ack"),
    ):
        value = body.get(field)
        if value is not None and not isinstance(value, str):
            raise hub_error("ArgumentInvalid", f"{field} must be a string")
        options[name] = value
    ttl = body.get("ttlSeconds")
    if ttl is not None and (not isinstance(ttl, (int, float)) or isinstance(ttl, bool)):
        raise hub_error("ArgumentInvalid", "ttlSeconds must be a number")
    return data, {"properties": props, "ttl": ttl, **options}


def _entry(seq: int, t: Telemetry) -> dict:
    return {"sequenceNumber": seq, **t.to_json()}
