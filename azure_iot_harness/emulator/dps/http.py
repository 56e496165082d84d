"""Request plumbing of DPS's REST APIs: api-version, bodies, and DPS's error answers."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...errors import ProvisioningError
from ..clock import Clock
from ..hub.http import drain
from ..protocol import dps as p
from ..protocol import jsontext

log = logging.getLogger("azure_iot_harness.dps")

_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
MAX_BODY_BYTES = 256 * 1024

Handler = Callable[[Request], Awaitable[Response]]


def answering(handler: Handler, clock: Clock) -> Handler:
    """Run a handler; a ProvisioningError becomes DPS's error answer (stamped by `clock`)."""

    async def run(request: Request) -> Response:
        try:
            check_api_version(request)
            return await handler(request)
        except ProvisioningError as exc:
            await drain(request)
            log.info("%s %s -> %d %d: %s", request.method, request.url.path, exc.status, exc.code, exc.message)
            return answer_response(p.Answer.error(exc, now=clock.now()))

    return run


def answer_response(answer: p.Answer, headers: dict[str, str] | None = None) -> Response:
    out = dict(headers or {})
    if answer.retry_after is not None:
        out["Retry-After"] = str(answer.retry_after)
    if answer.status >= 400:
        out["x-ms-error-code"] = str(answer.body.get("errorCode"))
    return JSONResponse(answer.body, status_code=answer.status, headers=out)


def check_api_version(request: Request) -> None:
    version = request.query_params.get("api-version")
    if version is None:
        raise p.dps_error("InvalidApiVersion", "the api-version query parameter is required (e.g. ?api-version=2021-06-01)")
    if not _API_VERSION.fullmatch(version):
        raise p.dps_error("InvalidApiVersion", f"api-version {version!r} is not of the form YYYY-MM-DD[-preview]")


async def body(request: Request) -> bytes:
    """The raw body (JSON is parsed by the caller, which knows what an empty body means)."""
    kind = request.headers.get("content-type")
    if kind is not None and "json" not in kind.lower():
        raise p.dps_error("UnsupportedMediaType", f"Content-Type {kind!r} is not application/json")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise p.dps_error("ArgumentInvalid", f"the request body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_object(request: Request, *, required: bool = True) -> dict:
    raw = await body(request)
    if not raw.strip():
        if not required:
            return {}
        raise p.dps_error("ArgumentNull", "the request body is empty; a JSON object is required")
    try:
        value = jsontext.loads(raw)
    except jsontext.JsonError as exc:
        raise p.dps_error("InvalidFormat", f"the request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise p.dps_error("ArgumentInvalid", f"the request body must be a JSON object, not {type(value).__name__}")
    return value
