"""The IoT Edge workload API a module reaches through `IOTEDGE_WORKLOADURI`.

Just what the Python SDK's `create_from_edge_environment()` uses: the trust bundle (the CA the
module trusts for edgeHub's certificate) and signing with the module's key, so the module builds
its own SAS tokens without ever seeing the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..hub.registry import Registry

API_VERSION = "2019-01-30"


def _error(status: int, message: str) -> Response:
    return JSONResponse({"message": message}, status_code=status)


def build_app(*, edge_device_id: str, registry: Registry, trust_bundle: Callable[[], bytes]) -> Starlette:
    async def get_trust_bundle(request: Request) -> Response:
        return JSONResponse({"certificate": trust_bundle().decode()})

    async def sign(request: Request) -> Response:
        module_id, generation_id = request.path_params["module"], request.path_params["genid"]
        doc = registry.get(edge_device_id, module_id)
        if doc is None:
            return _error(404, f"module {edge_device_id}/{module_id} not found")
        if doc["generationId"] != generation_id:
            return _error(404, f"module {module_id} has generation {doc['generationId']}, not {generation_id}")
        try:
            body = await request.json()
            key_id, algo, data = body["keyId"], body["algo"], base64.b64decode(body["data"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            return _error(400, 'the body must be {"keyId", "algo", "data" (base64)}')
        if algo != "HMACSHA256":
            return _error(400, f"algorithm {algo!r} is not supported (HMACSHA256 is)")
        keys = doc["authentication"].get("symmetricKey") or {}
        key = keys.get({"primary": "primaryKey", "secondary": "secondaryKey"}.get(key_id, ""))
        if not key:
            return _error(400, f"module {module_id} has no {key_id!r} key")
        digest = hmac.new(base64.b64decode(key), data, hashlib.sha256).digest()
        return JSONResponse({"digest": base64.b64encode(digest).decode()})

    return Starlette(
        routes=[
            Route("/trust-bundle", get_trust_bundle, methods=["GET"]),
            Route("/modules/{module}/genid/{genid}/sign", sign, methods=["POST"]),
        ]
    )
