"""IoT Hub's service REST API for the identity registry: devices, modules, bulk operations
(bulk.py), query, statistics.

Every route needs the `api-version` query parameter and a service SAS token in the
Authorization header (see service_auth). Documents have the shape the service SDKs
deserialise; errors are ServiceErrors, which web.py turns into Azure's error body.

The query endpoint understands a deliberately small part of IoT Hub's query language (see
`parse_query`); anything else is refused with "not supported by the emulator", never guessed.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...config import REGISTRY_READ, REGISTRY_WRITE, SERVICE_CONNECT
from ..protocol.errors import hub_error
from . import bulk, http
from . import query as q
from .context import HubContext
from .http import Handler
from .registry import Registry, check_id

DEFAULT_TOP = 1000  # GET /devices; the SDK documents values outside 1..1000 as 1000


def routes(hub: HubContext) -> list[BaseRoute]:
    registry = hub.registry

    def endpoint(handler: Handler, *permissions: str) -> Handler:
        return http.endpoint(hub, handler, *permissions)

    # ---- devices -------------------------------------------------------------------------

    async def get_device(request: Request) -> Response:
        return _resource(_device(registry, request))

    async def put_device(request: Request) -> Response:
        device_id = check_id(request.path_params["id"], "device id")
        body = await http.json_object(request)
        doc = await registry.put_device(body, if_match=request.headers.get("if-match"), device_id=device_id)
        return _resource(doc)

    async def delete_device(request: Request) -> Response:
        device_id = check_id(request.path_params["id"], "device id")
        await registry.delete(device_id, if_match=request.headers.get("if-match"))
        return Response(status_code=204)

    async def list_devices(request: Request) -> Response:
        top = http.int_param(request, "top", DEFAULT_TOP)
        if not 1 <= top <= 1000:
            top = DEFAULT_TOP
        return JSONResponse(registry.devices()[:top])

    async def bulk_devices(request: Request) -> Response:
        ops = bulk.parse(await http.json_body(request))
        status, body = bulk.result(await bulk.apply(ops, registry, hub.twins))
        return JSONResponse(body, status_code=status)

    # ---- modules -------------------------------------------------------------------------

    async def get_module(request: Request) -> Response:
        device_id = _device(registry, request)["deviceId"]
        module_id = check_id(request.path_params["mid"], "module id")
        doc = registry.view(device_id, module_id)
        if doc is None:
            raise hub_error("ModuleNotFound", f"module {device_id}/{module_id} not found")
        return _resource(doc)

    async def put_module(request: Request) -> Response:
        device_id = check_id(request.path_params["id"], "device id")
        module_id = check_id(request.path_params["mid"], "module id")
        body = await http.json_object(request)
        created = registry.get(device_id, module_id) is None
        doc = await registry.put_module(
            device_id, body, if_match=request.headers.get("if-match"), module_id=module_id
        )
        # Azure answers a module create with 201 and an update with 200 (devices: always 200).
        return _resource(doc, status=201 if created else 200)

    async def delete_module(request: Request) -> Response:
        device_id = _device(registry, request)["deviceId"]
        module_id = check_id(request.path_params["mid"], "module id")
        await registry.delete(device_id, module_id, if_match=request.headers.get("if-match"))
        return Response(status_code=204)

    async def list_modules(request: Request) -> Response:
        device_id = _device(registry, request)["deviceId"]
        return JSONResponse(registry.modules(device_id))

    # ---- query and statistics ------------------------------------------------------------

    async def query(request: Request) -> Response:
        body = await http.json_object(request)
        text = body.get("query")
        if not isinstance(text, str) or not text.strip():
            raise hub_error("ArgumentInvalid", "the body must be {\"query\": \"SELECT ...\"} with a non-empty query string")
        return q.answer(text, request, hub)

    async def device_statistics(request: Request) -> Response:
        devices = registry.devices()
        enabled = sum(1 for d in devices if d["status"] == "enabled")
        return JSONResponse(
            {"totalDeviceCount": len(devices), "enabledDeviceCount": enabled, "disabledDeviceCount": len(devices) - enabled}
        )

    async def service_statistics(request: Request) -> Response:
        connected = sum(1 for d in registry.devices() if registry.is_connected(d["deviceId"]))
        return JSONResponse({"connectedDeviceCount": connected})

    read, write = REGISTRY_READ, REGISTRY_WRITE
    return [
        # Before /devices/{id}, so that POST /devices/query is the query and not device "query".
        Route("/devices/query", endpoint(query, read, SERVICE_CONNECT), methods=["POST"]),
        Route("/devices", endpoint(list_devices, read), methods=["GET"]),
        Route("/devices", endpoint(bulk_devices, write), methods=["POST"]),
        Route("/devices/{id}", endpoint(get_device, read), methods=["GET"]),
        Route("/devices/{id}", endpoint(put_device, write), methods=["PUT"]),
        Route("/devices/{id}", endpoint(delete_device, write), methods=["DELETE"]),
        Route("/devices/{id}/modules", endpoint(list_modules, read), methods=["GET"]),
        Route("/devices/{id}/modules/{mid}", endpoint(get_module, read), methods=["GET"]),
        Route("/devices/{id}/modules/{mid}", endpoint(put_module, write), methods=["PUT"]),
        Route("/devices/{id}/modules/{mid}", endpoint(delete_module, write), methods=["DELETE"]),
        Route("/statistics/devices", endpoint(device_statistics, read), methods=["GET"]),
        Route("/statistics/service", endpoint(service_statistics, SERVICE_CONNECT), methods=["GET"]),
    ]


def _device(registry: Registry, request: Request) -> dict:
    device_id = check_id(request.path_params["id"], "device id")
    doc = registry.view(device_id)
    if doc is None:
        raise hub_error("DeviceNotFound", f"device {device_id} not found")
    return doc


def _resource(doc: dict, status: int = 200) -> Response:
    """One identity document, with its etag also in the ETag header (quoted, as HTTP wants)."""
    return JSONResponse(doc, status_code=status, headers={"ETag": f'"{doc["etag"]}"'})
