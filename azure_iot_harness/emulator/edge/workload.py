"""The IoT Edge workload API a module reaches through `IOTEDGE_WORKLOADURI`.

Just what the Python SDK's `create_from_edge_environment()` uses: the trust bundle (the CA the
module trusts for edgeHub's certificate) and signing with the module's key, so the module builds
its own SAS tokens without ever seeing the key.

Refusals follow iotedged of the API version the emulator advertises (2019-01-30): 400 for a
missing or unknown `api-version` or a malformed body; 404 when the key store has no key for the
module, its generation id or the key id (iotedged keys module keys by key id and generation
id, so a wrong generation id is "not found"); answers are `{"message": …}`. Not checked: which
process calls — iotedged answers a caller that is not the module's own process (found from the
Unix socket's peer credentials) as if the module did not exist, and aziot-edged 1.2+ with 403.
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
# The workload API versions iotedged and aziot-edged accept.
API_VERSIONS = ("2018-06-28", "2019-01-30", "2019-10-22", "2019-11-05", "2020-07-07", "2021-12-07", "2022-08-03")


def _error(status: int, message: str) -> Response:
    return JSONResponse({"message": message}, status_code=status)


def _api_version_problem(request: Request) -> Response | None:
    version = request.query_params.get("api-version")
    if version is None:
        return _error(400, "the api-version query parameter is missing")
    if version not in API_VERSIONS:
        return _error(400, f"invalid api-version {version!r} (supported: {', '.join(API_VERSIONS)})")
    return None


def build_app(*, edge_device_id: str, registry: Registry, trust_bundle: Callable[[], bytes]) -> Starlette:
    async def get_trust_bundle(request: Request) -> Response:
        return _api_version_problem(request) or JSONResponse({"certificate": trust_bundle().decode()})

    async def sign(request: Request) -> Response:
        problem = _api_version_problem(request)
        if problem is not None:
            return problem
        module_id, generation_id = request.path_params["module"], request.path_params["genid"]
        # As iotedged: the body is read before the key is looked up.
        try:
            body = await request.json()
            key_id, algo, data = body["keyId"], body["algo"], base64.b64decode(body["data"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            return _error(400, 'the body must be {"keyId", "algo", "data" (base64)}')
        if algo != "HMACSHA256":
            return _error(400, f"algorithm {algo!r} is not supported (HMACSHA256 is)")
        doc = registry.get(edge_device_id, module_id)
        if doc is None:
            return _error(404, f"module {edge_device_id}/{module_id} not found")
        if doc["generationId"] != generation_id:
            return _error(404, f"module {module_id} has generation {doc['generationId']}, not {generation_id}")
        keys = doc["authentication"].get("symmetricKey") or {}
        key = keys.get({"primary": "primaryKey", "secondary": "secondaryKey"}.get(key_id, ""))
        if not key:
            return _error(404, f"module {module_id} has no key {key_id!r}")
        digest = hmac.new(base64.b64decode(key), data, hashlib.sha256).digest()
        return JSONResponse({"digest": base64.b64encode(digest).decode()})

    return Starlette(
        routes=[
            Route("/trust-bundle", get_trust_bundle, methods=["GET"]),
            Route("/modules/{module}/genid/{genid}/sign", sign, methods=["POST"]),
        ]
    )
