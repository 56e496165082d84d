"""DPS's service REST API: individual enrollments, enrollment groups and registration records.

What the unmodified `azure-iot-deviceprovisioning` SDK calls: `GET|PUT|DELETE /enrollments/{id}`,
`POST /enrollments/query`, `POST /enrollments/{id}/attestationmechanism`, `POST /enrollments`
(bulk), the same under `/enrollmentGroups`, and `GET|DELETE /registrations/{id}`,
`POST /registrations/{groupId}/query`. Every request needs a service SAS token signed with the
`provisioningserviceowner` key for the DPS host. Queries understand `SELECT * FROM …` (and `*`) only.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...errors import ProvisioningError, SasTokenError
from ..protocol import dps as p
from ..protocol import sas
from ..protocol.numbers import INT64_MAX, NumberError, parse_int, shown
from . import http
from .context import DpsContext
from .dps import Dps
from .state import GROUP, INDIVIDUAL

MAX_BULK = 10
_ITEM_TYPES = {INDIVIDUAL: "Enrollment", GROUP: "EnrollmentGroup"}
_ID_FIELDS = {INDIVIDUAL: "registrationId", GROUP: "enrollmentGroupId"}
_TABLES = {INDIVIDUAL: "enrollments", GROUP: "enrollmentgroups"}


def routes(ctx: DpsContext) -> list[BaseRoute]:
    dps = ctx.dps

    def endpoint(handler: http.Handler) -> http.Handler:
        async def run(request: Request) -> Response:
            authorize(request, dps)
            return await handler(request)

        return http.answering(run, dps.clock)

    def enrollment_routes(prefix: str, kind: str) -> list[BaseRoute]:
        async def get(request: Request) -> Response:
            return _resource(dps.get_enrollment(kind, request.path_params["id"]))

        async def put(request: Request) -> Response:
            body = await http.json_object(request)
            if_match = request.headers.get("if-match")
            return _resource(await dps.put_enrollment(kind, request.path_params["id"], body, if_match=if_match))

        async def delete(request: Request) -> Response:
            await dps.delete_enrollment(kind, request.path_params["id"], if_match=request.headers.get("if-match"))
            return Response(status_code=204)

        async def attestation(request: Request) -> Response:
            doc = dps.get_enrollment(kind, request.path_params["id"])
            return JSONResponse(doc["attestation"])

        async def query(request: Request) -> Response:
            body = await http.json_object(request)
            _check_query(body.get("query"), _TABLES[kind])
            return _page(request, dps.list_enrollments(kind), _ITEM_TYPES[kind])

        async def bulk(request: Request) -> Response:
            return JSONResponse(await _bulk(dps, kind, await http.json_object(request)))

        return [
            Route(f"/{prefix}/query", endpoint(query), methods=["POST"]),
            Route(f"/{prefix}", endpoint(bulk), methods=["POST"]),
            Route(f"/{prefix}/{{id}}", endpoint(get), methods=["GET"]),
            Route(f"/{prefix}/{{id}}", endpoint(put), methods=["PUT"]),
            Route(f"/{prefix}/{{id}}", endpoint(delete), methods=["DELETE"]),
            Route(f"/{prefix}/{{id}}/attestationmechanism", endpoint(attestation), methods=["POST"]),
        ]

    async def get_registration(request: Request) -> Response:
        return _resource(dps.get_registration(request.path_params["id"]))

    async def delete_registration(request: Request) -> Response:
        await dps.delete_registration(request.path_params["id"], if_match=request.headers.get("if-match"))
        return Response(status_code=204)

    async def group_registrations(request: Request) -> Response:
        return _page(request, dps.group_registrations(request.path_params["id"]), "DeviceRegistration")

    return [
        *enrollment_routes("enrollments", INDIVIDUAL),
        *enrollment_routes("enrollmentGroups", GROUP),
        Route("/registrations/{id}/query", endpoint(group_registrations), methods=["POST"]),
        Route("/registrations/{id}", endpoint(get_registration), methods=["GET"]),
        Route("/registrations/{id}", endpoint(delete_registration), methods=["DELETE"]),
    ]


def authorize(request: Request, dps: Dps, header: str | None = None) -> None:
    """A service SAS token for the DPS host, signed with one of its policies' keys; else 401.
    `header`: the token, when not the Authorization header as sent."""
    header = header if header is not None else request.headers.get("authorization")
    if not header:
        raise p.dps_error("Unauthorized", "no Authorization header (a DPS service SAS token is required)")
    try:
        token = sas.parse(header.strip())
    except SasTokenError as exc:
        raise p.dps_error("Unauthorized", str(exc)) from None
    if token.expired(dps.clock.time()):
        raise p.dps_error("Unauthorized", f"SAS token expired at se={token.expiry}")
    policy = next((pol for pol in dps.policies if pol.name == token.key_name), None)
    if policy is None:
        raise p.dps_error("Unauthorized", f"no shared access policy skn={token.key_name!r} (the DPS has provisioningserviceowner)")
    host, path = sas.split_host(token.resource)
    if host != dps.host.lower() or path:
        raise p.dps_error("Unauthorized", f"SAS token audience {token.resource!r} is not the DPS host {dps.host!r}")
    if not token.verify(policy.key):
        raise p.dps_error("Unauthorized", f"SAS signature does not match policy {policy.name!r}")


def _check_query(text: object, table: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise p.dps_error("ArgumentInvalid", 'the body must be {"query": "SELECT * FROM …"} with a non-empty query')
    # "*" is what the older service SDK's samples send for "everything".
    if text.strip() != "*" and re.fullmatch(rf"\s*select\s+\*\s+from\s+{table}\s*", text, re.IGNORECASE) is None:
        raise p.not_supported(f"the query {text!r} (the emulator answers `SELECT * FROM {table}` only)")


def _page(request: Request, items: list[dict], item_type: str) -> Response:
    """One page of `items`: x-ms-max-item-count per page, x-ms-continuation = the next offset."""
    start = 0
    token = request.headers.get("x-ms-continuation")
    if token:
        try:
            start = parse_int(token, 0, INT64_MAX)
        except NumberError:
            raise p.dps_error("ArgumentInvalid", f"x-ms-continuation {shown(token)} was not given by this emulator") from None
    size = request.headers.get("x-ms-max-item-count")
    count = len(items)
    if size:
        try:
            count = parse_int(size, 1, INT64_MAX)
        except NumberError:
            raise p.dps_error("ArgumentInvalid", f"x-ms-max-item-count must be a positive integer, not {shown(size)}") from None
    page = items[start : start + count]
    headers = {"x-ms-item-type": item_type}
    if start + count < len(items):
        headers["x-ms-continuation"] = str(start + count)
    if size:
        headers["x-ms-max-item-count"] = size
    return JSONResponse(page, headers=headers)


def _resource(doc: dict) -> Response:
    return JSONResponse(doc, headers={"ETag": f'"{doc["etag"]}"'})


async def _bulk(dps: Dps, kind: str, body: dict) -> dict:
    """POST /enrollments or /enrollmentGroups: up to 10 creates, updates or deletes."""
    mode = body.get("mode")
    items = body.get("enrollments", body.get("enrollmentGroups"))
    if mode not in ("create", "update", "updateIfMatchETag", "delete"):
        raise p.dps_error("ArgumentInvalid", f"mode must be create, update, updateIfMatchETag or delete, not {mode!r}")
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise p.dps_error("ArgumentInvalid", "the body needs a non-empty array of enrollments")
    if len(items) > MAX_BULK:
        raise p.dps_error("ArgumentInvalid", f"a bulk operation takes at most {MAX_BULK} enrollments, not {len(items)}")
    field = _ID_FIELDS[kind]
    errors = []
    for item in items:
        key = item.get(field)
        try:
            if not isinstance(key, str):
                raise p.dps_error("ArgumentInvalid", f"an enrollment without {field}")
            if mode == "delete":
                await dps.delete_enrollment(kind, key, if_match=None)
            else:
                if_match = {"create": None, "update": "*", "updateIfMatchETag": item.get("etag") or ""}[mode]
                await dps.put_enrollment(kind, key, item, if_match=if_match)
        except ProvisioningError as exc:
            errors.append({field: key, "errorCode": exc.code, "errorStatus": exc.message})
    return {"isSuccessful": not errors, "errors": errors}
