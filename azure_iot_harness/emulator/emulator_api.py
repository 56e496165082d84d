"""The emulator's own REST API under `/_emulator/`, for what Azure offers over AMQP only.

Telemetry is read from Event Hubs in Azure; here it is read from `GET /_emulator/telemetry`
(a page) or `GET /_emulator/telemetry/stream` (newline-delimited JSON, one message a line, as
they are committed). Both need a service SAS token with ServiceConnect, like Event Hubs does.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..config import SERVICE_CONNECT
from .hub.service_auth import require
from .protocol.errors import hub_error
from .protocol.messages import Telemetry

if TYPE_CHECKING:
    from .app import Emulator

HEARTBEAT_SECONDS = 10.0


def routes(emulator: "Emulator") -> list[BaseRoute]:
    def authorize(request: Request) -> None:
        require(request, hub_host=emulator.config.host, policies=emulator.policies, permission=SERVICE_CONNECT)

    async def read(request: Request) -> Response:
        authorize(request)
        after = _int(request, "after", 0)
        limit = min(_int(request, "limit", 100), 1000)
        rows = await emulator.store.read_telemetry(after=after, device_id=request.query_params.get("deviceId"), limit=limit)
        last = rows[-1][0] if rows else after
        return JSONResponse({"messages": [_entry(seq, t) for seq, t in rows], "last": last})

    async def clear(request: Request) -> Response:
        authorize(request)
        await emulator.store.clear_telemetry()
        return Response(status_code=204)

    async def stream(request: Request) -> Response:
        authorize(request)
        device_id = request.query_params.get("deviceId")
        queue: asyncio.Queue[list[tuple[int, Telemetry]]] = asyncio.Queue()
        emulator.store.add_telemetry_listener(queue.put_nowait)
        # Listen first, then read the backlog: nothing committed in between is missed.
        if "after" in request.query_params:
            after = _int(request, "after", 0)
        else:
            after = await emulator.store.last_telemetry_seq()

        async def lines() -> AsyncIterator[bytes]:
            last = after
            try:
                while True:
                    backlog = await emulator.store.read_telemetry(after=last, device_id=device_id, limit=1000)
                    for seq, t in backlog:
                        last = seq
                        yield (json.dumps(_entry(seq, t)) + "\n").encode()
                    if len(backlog) == 1000:
                        continue
                    break
                while True:
                    try:
                        batch = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                    except asyncio.TimeoutError:
                        yield b"\n"  # keeps proxies and dead-peer detection honest
                        continue
                    for seq, t in batch:
                        if seq > last and (device_id is None or t.device_id == device_id):
                            last = seq
                            yield (json.dumps(_entry(seq, t)) + "\n").encode()
            finally:
                emulator.store.remove_telemetry_listener(queue.put_nowait)

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return [
        Route("/_emulator/telemetry", read, methods=["GET"]),
        Route("/_emulator/telemetry", clear, methods=["DELETE"]),
        Route("/_emulator/telemetry/stream", stream, methods=["GET"]),
    ]


def _entry(seq: int, t: Telemetry) -> dict:
    return {"sequenceNumber": seq, **t.to_json()}


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise hub_error("ArgumentInvalid", f"query parameter {name} must be an integer, not {raw!r}") from None
