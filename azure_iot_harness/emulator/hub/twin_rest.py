"""IoT Hub's service REST API for twins, direct methods and the C2D queue of a device.

`GET/PATCH/PUT /twins/{id}[/modules/{mid}]`, `POST /twins/{id}[/modules/{mid}]/methods` and
`DELETE /devices/{id}/commands`, compatible with the unmodified azure-iot-hub SDK.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...config import REGISTRY_READ, REGISTRY_WRITE, SERVICE_CONNECT
from ..protocol.errors import hub_error
from . import http
from .context import HubContext
from .http import Handler
from .methods import parse_call
from .registry import Key, check_id


def routes(hub: HubContext) -> list[BaseRoute]:
    registry = hub.registry

    def endpoint(handler: Handler, *permissions: str) -> Handler:
        return http.endpoint(hub, handler, *permissions)

    def identity(request: Request) -> Key:
        device_id = check_id(request.path_params["id"], "device id")
        module_id = request.path_params.get("mid")
        if module_id is not None:
            check_id(module_id, "module id")
            if registry.get(device_id, module_id) is None:
                if registry.get(device_id) is None:
                    raise hub_error("DeviceNotFound", f"device {device_id} not found")
                raise hub_error("ModuleNotFound", f"module {device_id}/{module_id} not found")
        elif registry.get(device_id) is None:
            raise hub_error("DeviceNotFound", f"device {device_id} not found")
        return (device_id, module_id)

    def twin_response(key: Key) -> Response:
        view = hub.twins.view(key)
        return JSONResponse(view, headers={"ETag": f'"{view["etag"]}"'})

    async def get_twin(request: Request) -> Response:
        return twin_response(identity(request))

    async def patch_twin(request: Request) -> Response:
        key = identity(request)
        body = await http.json_object(request)
        await hub.twins.service_update(key, body, if_match=request.headers.get("if-match"), replace=False)
        return twin_response(key)

    async def put_twin(request: Request) -> Response:
        key = identity(request)
        body = await http.json_object(request)
        await hub.twins.service_update(key, body, if_match=request.headers.get("if-match"), replace=True)
        return twin_response(key)

    async def invoke(request: Request) -> Response:
        key = identity(request)
        call = parse_call(await http.json_object(request))
        return JSONResponse(await hub.methods.invoke(key, call))

    async def purge(request: Request) -> Response:
        device_id = check_id(request.path_params["id"], "device id")
        count = await hub.c2d.purge(device_id)
        return JSONResponse({"deviceId": device_id, "totalMessagesPurged": count})

    read = (REGISTRY_READ, SERVICE_CONNECT)
    write = (REGISTRY_WRITE, SERVICE_CONNECT)
    out: list[BaseRoute] = []
    for path in ("/twins/{id}", "/twins/{id}/modules/{mid}"):
        out += [
            Route(path, endpoint(get_twin, *read), methods=["GET"]),
            Route(path, endpoint(patch_twin, *write), methods=["PATCH"]),
            Route(path, endpoint(put_twin, *write), methods=["PUT"]),
            Route(path + "/methods", endpoint(invoke, SERVICE_CONNECT), methods=["POST"]),
        ]
    out.append(Route("/devices/{id}/commands", endpoint(purge, SERVICE_CONNECT), methods=["DELETE"]))
    return out

