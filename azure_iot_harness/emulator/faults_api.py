"""`/_emulator/faults` and `/_emulator/trace`: fault injection and the packet trace over HTTP,
for tests written in any language. Service SAS (ServiceConnect) as the other `/_emulator` routes.

- `POST /_emulator/faults` `{"kind", "deviceId", "moduleId", "count", "durationSeconds",
  "params": {...}}` → 201 with the fault; `GET` lists the faults waiting; `DELETE` clears them;
  `DELETE /_emulator/faults/{id}` removes one; `GET /_emulator/faults/kinds` describes the kinds.
- `GET /_emulator/trace?deviceId=&moduleId=&conn=&since=` → NDJSON, one event a line;
  `&follow=true` keeps streaming new events; `DELETE /_emulator/trace` clears it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..errors import FaultError
from .faults import KINDS, FaultBook
from .hub import http
from .protocol.errors import hub_error
from .trace import Trace

HEARTBEAT_SECONDS = 10.0


def routes(book: FaultBook, trace: Trace, authorize: Callable[[Request], None]) -> list[BaseRoute]:
    async def add(request: Request) -> Response:
        authorize(request)
        body = await http.json_object(request)
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise hub_error("ArgumentInvalid", "params must be a JSON object")
        unknown = sorted(set(body) - {"kind", "deviceId", "moduleId", "count", "durationSeconds", "params"})
        if unknown:
            raise hub_error("ArgumentInvalid", f"unknown field(s): {', '.join(unknown)}")
        for name in ("kind", "deviceId", "moduleId"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise hub_error("ArgumentInvalid", f"{name} must be a string")
        if not body.get("kind"):
            raise hub_error("ArgumentInvalid", f"kind is required; one of {', '.join(sorted(KINDS))}")
        try:
            fault = book.add(
                body["kind"],
                device_id=body.get("deviceId"),
                module_id=body.get("moduleId"),
                count=body.get("count"),
                duration=body.get("durationSeconds"),
                **{str(k): v for k, v in params.items()},
            )
        except FaultError as exc:
            raise hub_error("ArgumentInvalid", str(exc)) from None
        try:
            await book.wait_applied(fault)
        except FaultError as exc:
            raise hub_error("ArgumentInvalid", str(exc)) from None
        return JSONResponse(fault.to_json(), status_code=201)

    async def listing(request: Request) -> Response:
        authorize(request)
        return JSONResponse([f.to_json() for f in book.list()])

    async def clear(request: Request) -> Response:
        authorize(request)
        book.clear()
        return Response(status_code=204)

    async def remove(request: Request) -> Response:
        authorize(request)
        if not book.remove(request.path_params["id"]):
            raise hub_error("NotFound", f"no fault {request.path_params['id']}")
        return Response(status_code=204)

    async def describe_kinds(request: Request) -> Response:
        authorize(request)
        return JSONResponse(
            [
                {
                    "kind": k.name,
                    "imitates": k.imitates,
                    "params": [
                        {"name": p.name, "type": p.type.__name__, "default": p.default, "choices": list(p.choices) or None}
                        for p in k.params
                    ],
                }
                for k in sorted(KINDS.values(), key=lambda k: k.name)
            ]
        )

    async def read_trace(request: Request) -> Response:
        authorize(request)
        q = request.query_params
        conn = http.int_param(request, "conn", 0, low=0) or None
        since = http.int_param(request, "since", 0, low=0) or None
        filters: dict[str, Any] = {"device_id": q.get("deviceId"), "module_id": q.get("moduleId"), "conn": conn, "since_seq": since}
        if q.get("follow", "").lower() not in ("1", "true", "yes"):
            lines = "".join(json.dumps(e.to_json()) + "\n" for e in trace.events(**filters))
            return Response(lines, media_type="application/x-ndjson")

        async def stream() -> AsyncIterator[bytes]:
            async for event in trace.follow_with_heartbeat(**filters, heartbeat=HEARTBEAT_SECONDS):
                # A blank line when nothing happened keeps proxies and dead-peer detection honest.
                yield b"\n" if event is None else (json.dumps(event.to_json()) + "\n").encode()

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    async def clear_trace(request: Request) -> Response:
        authorize(request)
        trace.clear()
        return Response(status_code=204)

    return [
        Route("/_emulator/faults", add, methods=["POST"]),
        Route("/_emulator/faults", listing, methods=["GET"]),
        Route("/_emulator/faults", clear, methods=["DELETE"]),
        Route("/_emulator/faults/kinds", describe_kinds, methods=["GET"]),
        Route("/_emulator/faults/{id}", remove, methods=["DELETE"]),
        Route("/_emulator/trace", read_trace, methods=["GET"]),
        Route("/_emulator/trace", clear_trace, methods=["DELETE"]),
    ]
