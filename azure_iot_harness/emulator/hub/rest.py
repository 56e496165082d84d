"""IoT Hub's service REST API for the identity registry: devices, modules, query, statistics.

Every route needs the `api-version` query parameter and a service SAS token in the
Authorization header (see service_auth). Documents have the shape the service SDKs
deserialise; errors are ServiceErrors, which web.py turns into Azure's error body.

The query endpoint understands a deliberately small part of IoT Hub's query language (see
`parse_query`); anything else is refused with "not supported by the emulator", never guessed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...config import REGISTRY_READ, REGISTRY_WRITE, SERVICE_CONNECT
from ...errors import ServiceError
from ..protocol.errors import hub_error, not_supported
from .registry import NEVER, check_id
from .service_auth import require

if TYPE_CHECKING:
    from ..app import Emulator

_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
MAX_BODY_BYTES = 256 * 1024
DEFAULT_TOP = 1000  # GET /devices; the SDK documents values outside 1..1000 as 1000
# Query page size when x-ms-max-item-count is absent, and the most the emulator hands out in
# one page. UNVERIFIED against Azure, which only says it "may use a different value".
DEFAULT_PAGE = 100
MAX_PAGE = 1000

Handler = Callable[[Request], Awaitable[Response]]


def routes(emulator: "Emulator") -> list[BaseRoute]:
    def endpoint(handler: Handler, *permissions: str) -> Handler:
        """Check api-version, then the caller's token (any one of `permissions` suffices)."""

        async def run(request: Request) -> Response:
            try:
                _check_api_version(request)
                _authorize(request, emulator, permissions)
                return await handler(request)
            except ServiceError:
                await _drain(request)
                raise

        return run

    # ---- devices -------------------------------------------------------------------------

    async def get_device(request: Request) -> Response:
        return _resource(_device(emulator, request))

    async def put_device(request: Request) -> Response:
        device_id = check_id(request.path_params["id"], "device id")
        body = await _json_object(request)
        doc = await emulator.registry.put_device(body, if_match=request.headers.get("if-match"), device_id=device_id)
        return _resource(doc)

    async def delete_device(request: Request) -> Response:
        device_id = check_id(request.path_params["id"], "device id")
        await emulator.registry.delete(device_id, if_match=request.headers.get("if-match"))
        return Response(status_code=204)

    async def list_devices(request: Request) -> Response:
        top = _int_param(request, "top", DEFAULT_TOP)
        if not 1 <= top <= 1000:
            top = DEFAULT_TOP
        return JSONResponse(emulator.registry.devices()[:top])

    async def bulk_devices(request: Request) -> Response:
        raise not_supported("Bulk registry operations (POST /devices)")

    # ---- modules -------------------------------------------------------------------------

    async def get_module(request: Request) -> Response:
        device_id = _device(emulator, request)["deviceId"]
        module_id = check_id(request.path_params["mid"], "module id")
        doc = emulator.registry.view(device_id, module_id)
        if doc is None:
            raise hub_error("ModuleNotFound", f"module {device_id}/{module_id} not found")
        return _resource(doc)

    async def put_module(request: Request) -> Response:
        device_id = check_id(request.path_params["id"], "device id")
        module_id = check_id(request.path_params["mid"], "module id")
        body = await _json_object(request)
        created = emulator.registry.get(device_id, module_id) is None
        doc = await emulator.registry.put_module(
            device_id, body, if_match=request.headers.get("if-match"), module_id=module_id
        )
        # Azure answers a module create with 201 and an update with 200 (devices: always 200).
        return _resource(doc, status=201 if created else 200)

    async def delete_module(request: Request) -> Response:
        device_id = _device(emulator, request)["deviceId"]
        module_id = check_id(request.path_params["mid"], "module id")
        await emulator.registry.delete(device_id, module_id, if_match=request.headers.get("if-match"))
        return Response(status_code=204)

    async def list_modules(request: Request) -> Response:
        device_id = _device(emulator, request)["deviceId"]
        return JSONResponse(emulator.registry.modules(device_id))

    # ---- query and statistics ------------------------------------------------------------

    async def query(request: Request) -> Response:
        body = await _json_object(request)
        text = body.get("query")
        if not isinstance(text, str) or not text.strip():
            raise hub_error("ArgumentInvalid", "the body must be {\"query\": \"SELECT ...\"} with a non-empty query string")
        q = parse_query(text)
        page_size = _page_size(request)
        offset = _decode_continuation(request.headers.get("x-ms-continuation"), text)
        return _query_response(run_query(q, emulator), text, offset, page_size, q.count_alias is None)

    async def device_statistics(request: Request) -> Response:
        devices = emulator.registry.devices()
        enabled = sum(1 for d in devices if d["status"] == "enabled")
        return JSONResponse(
            {"totalDeviceCount": len(devices), "enabledDeviceCount": enabled, "disabledDeviceCount": len(devices) - enabled}
        )

    async def service_statistics(request: Request) -> Response:
        registry = emulator.registry
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


# ---- request plumbing --------------------------------------------------------------------------


def _check_api_version(request: Request) -> None:
    version = request.query_params.get("api-version")
    if version is None:
        raise hub_error("InvalidProtocolVersion", "the api-version query parameter is required (e.g. ?api-version=2021-04-12)")
    if not _API_VERSION.fullmatch(version):
        raise hub_error("InvalidProtocolVersion", f"api-version {version!r} is not of the form YYYY-MM-DD[-preview]")


def _authorize(request: Request, emulator: "Emulator", permissions: tuple[str, ...]) -> None:
    """Pass when the token grants any of `permissions`; otherwise raise the first refusal.

    Token faults (expired, bad signature, wrong audience) fail the same way for every
    permission, so trying the next one only matters for a valid token of a narrower policy.
    """
    first: ServiceError | None = None
    for permission in permissions:
        try:
            require(request, hub_host=emulator.config.host, policies=emulator.policies, permission=permission)
            return
        except ServiceError as exc:
            first = first or exc
    assert first is not None
    raise first


async def _json_object(request: Request) -> dict:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise hub_error("RequestEntityTooLarge", f"the request body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise hub_error("ArgumentNull", "the request body is empty; a JSON object is required")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise hub_error("IotHubFormatError", f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise hub_error("ArgumentInvalid", f"the request body must be a JSON object, not {type(body).__name__}")
    return body


async def _drain(request: Request) -> None:
    """Read what is left of the body before an error answer.

    When the answer goes out with the body unread, hypercorn's TLS close sometimes fails with
    APPLICATION_DATA_AFTER_CLOSE_NOTIFY and logs an "Error in ASGI Framework" traceback next to
    the one clear line for the error (measured: about 1 in 1000 such requests; none drained).
    """
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return
    except (RuntimeError, ClientDisconnect):  # RuntimeError: the handler already read the stream
        return


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise hub_error("ArgumentInvalid", f"query parameter {name} must be an integer, not {raw!r}") from None


def _device(emulator: "Emulator", request: Request) -> dict:
    device_id = check_id(request.path_params["id"], "device id")
    doc = emulator.registry.view(device_id)
    if doc is None:
        raise hub_error("DeviceNotFound", f"device {device_id} not found")
    return doc


def _resource(doc: dict, status: int = 200) -> Response:
    """One identity document, with its etag also in the ETag header (quoted, as HTTP wants)."""
    return JSONResponse(doc, status_code=status, headers={"ETag": f'"{doc["etag"]}"'})


# ---- query: parsing ------------------------------------------------------------------------------

SUPPORTED = (
    "SELECT * | SELECT COUNT() AS alias, FROM devices | devices.modules, "
    "optional WHERE field = literal [AND ...] on deviceId, moduleId, status, connectionState, capabilities.iotEdge"
)
_FIELDS = {
    "devices": ("deviceId", "status", "connectionState", "capabilities.iotEdge"),
    "devices.modules": ("deviceId", "moduleId", "status", "connectionState"),
}
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'[^']*'|"[^"]*")
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)*)
    | (?P<op><>|!=|<=|>=|[=<>*(),\[\]+\-/%])
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Query:
    source: str  # "devices" or "devices.modules"
    count_alias: str | None  # None for SELECT *
    conditions: tuple[tuple[str, object], ...]  # (field, literal), all of which must hold


@dataclass(frozen=True)
class _Token:
    kind: str  # string, number, name, op, end
    text: str
    pos: int

    def keyword(self, word: str) -> bool:
        return self.kind == "name" and self.text.upper() == word


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            start = len(text) - len(text[pos:].lstrip())
            if text[start] in "'\"":
                raise _unsupported(f"the unterminated string at position {start}")
            raise _unsupported(f"the character {text[start]!r} at position {start}")
        kind = m.lastgroup
        assert kind is not None
        tokens.append(_Token(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _unsupported(what: str) -> ServiceError:
    return hub_error("ArgumentInvalid", f"query: {what} is not supported by the emulator (supported: {SUPPORTED})")


def parse_query(text: str) -> Query:
    """Parse the subset of IoT Hub's query language the emulator answers, or raise a 400."""
    tokens = _tokenize(text)
    i = 0

    def take() -> _Token:
        nonlocal i
        tok = tokens[i]
        i = min(i + 1, len(tokens) - 1)
        return tok

    def expect_keyword(word: str) -> None:
        tok = take()
        if not tok.keyword(word):
            raise _unsupported(f"{_describe(tok)} in place of {word}")

    expect_keyword("SELECT")
    count_alias: str | None = None
    tok = take()
    if tok.keyword("COUNT"):
        if take().text != "(" or take().text != ")":
            raise _unsupported("COUNT with arguments")
        if not tokens[i].keyword("AS"):
            raise _unsupported("COUNT() without AS alias")
        take()
        alias = take()
        if alias.kind != "name" or "." in alias.text:
            raise _unsupported(f"{_describe(alias)} as a COUNT() alias")
        count_alias = alias.text
    elif tok.text != "*":
        raise _unsupported(f"the projection starting with {_describe(tok)}")
    expect_keyword("FROM")
    source_tok = take()
    source = source_tok.text.lower() if source_tok.kind == "name" else ""
    if source not in _FIELDS:
        raise _unsupported(f"FROM {_describe(source_tok)}")
    conditions: list[tuple[str, object]] = []
    if tokens[i].keyword("WHERE"):
        take()
        while True:
            conditions.append(_condition(source, take(), take(), take()))
            if not tokens[i].keyword("AND"):
                break
            take()
    if tokens[i].kind != "end":
        raise _unsupported(_describe(tokens[i]))
    return Query(source, count_alias, tuple(conditions))


def _condition(source: str, field_tok: _Token, op_tok: _Token, value_tok: _Token) -> tuple[str, object]:
    if field_tok.kind != "name" or field_tok.keyword("NOT"):
        raise _unsupported(f"a condition starting with {_describe(field_tok)}")
    field = _unqualify(source, field_tok.text)
    if field not in _FIELDS[source]:
        raise _unsupported(f"WHERE on {field_tok.text!r} (FROM {source})")
    if op_tok.text != "=" or op_tok.kind != "op":
        raise _unsupported(f"the comparison {_describe(op_tok)}")
    return field, _literal(value_tok)


def _unqualify(source: str, name: str) -> str:
    """`devices.status` means `status` in a device query; `devices.deviceId` also in a module one."""
    if source == "devices.modules":
        if name.startswith("devices.modules."):
            return name[len("devices.modules.") :]
        return "deviceId" if name == "devices.deviceId" else name
    return name[len("devices.") :] if name.startswith("devices.") else name


def _literal(tok: _Token) -> object:
    if tok.kind == "string":
        return tok.text[1:-1]
    if tok.kind == "number":
        return float(tok.text) if "." in tok.text else int(tok.text)
    if tok.kind == "name" and tok.text.lower() in ("true", "false"):
        return tok.text.lower() == "true"
    raise _unsupported(f"the value {_describe(tok)}")


def _describe(tok: _Token) -> str:
    return "the end of the query" if tok.kind == "end" else f"{tok.text!r} at position {tok.pos}"


# ---- query: running and paging -------------------------------------------------------------------


def run_query(q: Query, emulator: "Emulator") -> list[dict]:
    registry = emulator.registry
    identities = registry.devices() if q.source == "devices" else registry.all_modules()
    twins = [t for t in map(synthetic_twin, identities) if all(_matches(t, f, v) for f, v in q.conditions)]
    if q.count_alias is not None:
        return [{q.count_alias: len(twins)}]
    return twins


def _matches(doc: dict, field: str, value: object) -> bool:
    actual: object = doc
    for part in field.split("."):
        if not isinstance(actual, dict) or part not in actual:
            return False
        actual = actual[part]
    # Typed equality, as in IoT Hub: 'true' does not equal true, nor 1 equal true.
    return type(actual) is type(value) and actual == value


def synthetic_twin(identity: dict) -> dict:
    """A minimal twin made from an identity document, until the emulator keeps real twins."""
    auth = identity["authentication"]
    module_id = identity.get("moduleId")
    # The identity keeps no creation time; for a device, its first status time is that moment.
    created = identity.get("statusUpdatedTime", NEVER)
    twin: dict = {"deviceId": identity["deviceId"]}
    if module_id is not None:
        twin["moduleId"] = module_id
    twin.update(
        {
            "etag": "AAAAAAAAAAE=",  # base64 of the 64-bit twin version 1, the form Azure uses
            "deviceEtag": identity["etag"],
            "status": identity.get("status", "enabled"),
            "statusUpdateTime": created,
            "connectionState": identity["connectionState"],
            "lastActivityTime": identity["lastActivityTime"],
            "cloudToDeviceMessageCount": identity.get("cloudToDeviceMessageCount", 0),
            "authenticationType": auth["type"],
            "x509Thumbprint": dict(auth["x509Thumbprint"]),
            "version": 1,
            "tags": {},
            "properties": {
                "desired": {"$metadata": {"$lastUpdated": created}, "$version": 1},
                "reported": {"$metadata": {"$lastUpdated": created}, "$version": 1},
            },
        }
    )
    if module_id is None:
        twin["statusReason"] = identity.get("statusReason")
        twin["capabilities"] = dict(identity.get("capabilities") or {"iotEdge": False})
        if identity.get("deviceScope"):
            twin["deviceScope"] = identity["deviceScope"]
            twin["parentScopes"] = list(identity.get("parentScopes") or [])
    return twin


def _page_size(request: Request) -> int:
    raw = request.headers.get("x-ms-max-item-count")
    if raw is None:
        return DEFAULT_PAGE
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if size < 1:
        raise hub_error("ArgumentInvalid", f"x-ms-max-item-count must be a positive integer, not {raw!r}")
    return min(size, MAX_PAGE)


def _query_digest(text: str) -> str:
    return hashlib.sha256(text.strip().encode()).hexdigest()[:16]


def encode_continuation(text: str, offset: int) -> str:
    """An opaque token: the next offset, bound to the query it came from."""
    raw = json.dumps({"o": offset, "q": _query_digest(text)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_continuation(token: str | None, text: str) -> int:
    if token is None or token == "":
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset, digest = data["o"], data["q"]
    except (ValueError, TypeError, KeyError):
        raise hub_error("ArgumentInvalid", f"x-ms-continuation {token!r} is not a token this emulator issued") from None
    if not isinstance(offset, int) or offset < 0 or digest != _query_digest(text):
        raise hub_error("ArgumentInvalid", "x-ms-continuation belongs to a different query (or was altered)")
    return offset


def _query_response(items: list[dict], text: str, offset: int, page_size: int, twins: bool) -> Response:
    page = items[offset : offset + page_size]
    headers = {"x-ms-item-type": "Twin" if twins else "JSON"}
    if offset + page_size < len(items):
        headers["x-ms-continuation"] = encode_continuation(text, offset + page_size)
    return JSONResponse(page, headers=headers)
