"""The management plane's certificate routes, for the hub and for DPS, as Azure Resource Manager
serves them to `az iot hub certificate` / `az iot dps certificate` and the management SDKs, and
the hub's consumer groups (`az iot hub consumer-group`):

    /subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.Devices/IotHubs/{hub}/certificates[/{name}]
    /subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.Devices/provisioningServices/{dps}/certificates[/{name}]
    /subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.Devices/IotHubs/{hub}/eventHubEndpoints/events/ConsumerGroups[/{name}]

GET (one or the list), PUT (create or replace; body `{"properties": {"certificate", "isVerified"}}`,
or DPS's older `{"certificate", "isVerified"}`), DELETE, and POST `…/generateVerificationCode`
and `…/verify` (body `{"certificate"}`); all but GET and PUT need the etag in If-Match.
Consumer groups: GET (one or the list), PUT (body `{"properties": {"name"}}`), DELETE.
Resource Manager authenticates with Microsoft Entra ID, which the emulator does not have: it takes
the service's own SAS token instead (`iothubowner` for the hub, `provisioningserviceowner` for
DPS), as `SharedAccessSignature …` or as a bearer token (`Bearer SharedAccessSignature …`, what a
management SDK sends given a credential that returns that token). Subscription and resource group
may be anything; the hub or DPS name must be the emulator's (the first label of its host name).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..config import REGISTRY_WRITE
from ..errors import ServiceError
from .amqp import consumer_groups as cg
from .amqp.consumer_groups import ConsumerGroups
from .ca_certificates import CaCertificates
from .dps.dps import Dps
from .dps.service_rest import authorize as dps_authorize
from .hub.context import HubContext
from .hub.http import drain
from .hub.service_auth import require
from .protocol import ca_certificates as p
from .protocol import jsontext

log = logging.getLogger("azure_iot_harness.management")

_PARENT = "/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Devices/{kind}/{resource}"
_KINDS = {"iothubs": ("IotHubs", "Microsoft.Devices/IotHubs/Certificates"),
          "provisioningservices": ("provisioningServices", "Microsoft.Devices/provisioningServices/Certificates")}  # fmt: skip
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class _Target:
    """The certificates a request's path names, and how their descriptions name them."""

    cas: CaCertificates
    parent_id: str
    resource_type: str
    dps: bool

    def describe(self, record: dict, *, with_code: bool = False) -> dict:
        out = p.description(record, self.parent_id, self.resource_type, with_code=with_code)
        if self.dps:  # DPS's `certificate` is a byte array: base64 of the PEM text
            out["properties"]["certificate"] = base64.b64encode(record["certificate"].encode()).decode()
        return out


@dataclass(frozen=True)
class ManagementContext:
    name: str  # the hub's (and DPS's) resource name
    hub: HubContext
    hub_cas: CaCertificates
    dps: Dps
    dps_cas: CaCertificates
    consumer_groups: ConsumerGroups | None = None  # the Event Hubs-compatible endpoint's


def routes(ctx: ManagementContext) -> list[BaseRoute]:
    Handler = Callable[[Request, _Target], Awaitable[Response]]

    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return await handler(request, _resolve(request, ctx))
            except ServiceError as exc:
                await drain(request)
                log.info("%s %s -> %d %s: %s", request.method, request.url.path, exc.status, exc.error_code, exc.message)
                return JSONResponse(p.error_body(exc), status_code=exc.status)

        return run

    async def list_all(request: Request, target: _Target) -> Response:
        return JSONResponse({"value": [target.describe(r) for r in target.cas.list()]})

    async def get(request: Request, target: _Target) -> Response:
        return JSONResponse(target.describe(target.cas.get(request.path_params["name"])))

    async def put(request: Request, target: _Target) -> Response:
        cas = target.cas
        body = await _json(request)
        nested = body.get("properties")
        props: dict = nested if isinstance(nested, dict) else body
        name = request.path_params["name"]
        created = not any(r["name"].lower() == name.lower() for r in cas.list())
        verified = props.get("isVerified", False)
        if not isinstance(verified, bool):
            raise p.management_error(400, "InvalidCertificate", "properties.isVerified must be true or false")
        record = await cas.put(name, props.get("certificate"), verified=verified, if_match=request.headers.get("if-match"))
        # IoT Hub answers 201 for a new certificate; DPS 200 (its management SDK takes nothing else).
        return JSONResponse(target.describe(record), status_code=201 if created and not target.dps else 200)

    async def delete(request: Request, target: _Target) -> Response:
        await target.cas.delete(request.path_params["name"], request.headers.get("if-match"))
        return Response(status_code=200)

    async def generate_code(request: Request, target: _Target) -> Response:
        await drain(request)
        record = await target.cas.generate_verification_code(request.path_params["name"], request.headers.get("if-match"))
        return JSONResponse(target.describe(record, with_code=True))

    async def verify(request: Request, target: _Target) -> Response:
        body = await _json(request)
        record = await target.cas.verify(request.path_params["name"], body.get("certificate"), request.headers.get("if-match"))
        return JSONResponse(target.describe(record))

    base = _PARENT + "/certificates"
    return consumer_group_routes(ctx) + [
        Route(base, endpoint(list_all), methods=["GET"]),
        Route(base + "/{name}", endpoint(get), methods=["GET"]),
        Route(base + "/{name}", endpoint(put), methods=["PUT"]),
        Route(base + "/{name}", endpoint(delete), methods=["DELETE"]),
        Route(base + "/{name}/generateVerificationCode", endpoint(generate_code), methods=["POST"]),
        Route(base + "/{name}/verify", endpoint(verify), methods=["POST"]),
    ]


def consumer_group_routes(ctx: ManagementContext) -> list[BaseRoute]:
    """`…/IotHubs/{hub}/eventHubEndpoints/events/ConsumerGroups[/{name}]`: list, GET, PUT, DELETE,
    as `az iot hub consumer-group` and the management SDK call them."""
    groups = ctx.consumer_groups
    if groups is None:
        return []
    Handler = Callable[[Request, str], Awaitable[Response]]

    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                target = _resolve(request, ctx)
                if target.dps:
                    raise p.management_error(404, "ResourceNotFound", "provisioning services have no event hub endpoints")
                if request.path_params["endpoint"].lower() != "events":
                    raise p.management_error(404, "ResourceNotFound", f"no event hub endpoint {request.path_params['endpoint']!r}: IoT Hub has 'events'")
                return await handler(request, target.parent_id)
            except ServiceError as exc:
                await drain(request)
                log.info("%s %s -> %d %s: %s", request.method, request.url.path, exc.status, exc.error_code, exc.message)
                body = p.error_body(exc)
                if exc.error_code.isdigit():  # IoT Hub's numeric codes go out as numbers
                    body["code"] = int(exc.error_code)
                return JSONResponse(body, status_code=exc.status)

        return run

    async def list_all(request: Request, parent_id: str) -> Response:
        return JSONResponse({"value": [cg.describe(r, parent_id) for r in groups.list()], "nextLink": None})

    async def get(request: Request, parent_id: str) -> Response:
        return JSONResponse(cg.describe(groups.get(request.path_params["name"]), parent_id))

    async def put(request: Request, parent_id: str) -> Response:
        cg.check_body(await _json(request), request.query_params["api-version"])
        return JSONResponse(cg.describe(await groups.create(request.path_params["name"]), parent_id))

    async def delete(request: Request, parent_id: str) -> Response:
        await drain(request)
        await groups.delete(request.path_params["name"])
        return Response(status_code=200)

    base = _PARENT + "/eventHubEndpoints/{endpoint}/ConsumerGroups"
    return [
        Route(base, endpoint(list_all), methods=["GET"]),
        Route(base + "/{name}", endpoint(get), methods=["GET"]),
        Route(base + "/{name}", endpoint(put), methods=["PUT"]),
        Route(base + "/{name}", endpoint(delete), methods=["DELETE"]),
    ]


def _resolve(request: Request, ctx: ManagementContext) -> _Target:
    """Which service the path names (authorised), its resource id and certificate type."""
    params = request.path_params
    kind = params["kind"].lower()
    if kind not in _KINDS:
        raise p.management_error(404, "ResourceNotFound", f"resource type Microsoft.Devices/{params['kind']} is not served by the emulator")
    if "api-version" not in request.query_params:
        raise p.management_error(400, "MissingApiVersionParameter", "the api-version query parameter is required")
    if params["resource"].lower() != ctx.name.lower():
        raise p.management_error(404, "ResourceNotFound", f"no {_KINDS[kind][0]} resource named {params['resource']!r} (this one: {ctx.name})")
    header = request.headers.get("authorization") or ""
    token = header[len("Bearer "):].strip() if header.lower().startswith("bearer ") else header
    try:
        if kind == "iothubs":
            hub = ctx.hub
            require(request, hub_host=hub.host, policies=hub.policies, permission=REGISTRY_WRITE, now=hub.clock.time(), header=token)
        else:
            dps_authorize(request, ctx.dps, header=token)
    except ServiceError as exc:
        raise p.management_error(401, "AuthenticationFailed", exc.message) from None
    parent_id = _PARENT.format(sub=params["sub"], group=params["group"], kind=_KINDS[kind][0], resource=params["resource"])
    return _Target(ctx.hub_cas if kind == "iothubs" else ctx.dps_cas, parent_id, _KINDS[kind][1], dps=kind != "iothubs")


async def _json(request: Request) -> dict:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise p.management_error(400, "InvalidRequestContent", f"the request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        value = jsontext.loads(raw) if raw.strip() else {}
    except jsontext.JsonError as exc:
        raise p.management_error(400, "InvalidRequestContent", f"the request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise p.management_error(400, "InvalidRequestContent", "the request body must be a JSON object")
    return value
