"""The explorer's ASGI app: server-rendered pages over the emulator's own REST API.

Pages are Jinja2 templates (the shell of each view); the data comes from the same REST routes
the service SDKs use, called by a small hand-written script (static/explorer.js). The browser
reaches them under `/api/hub/…` (IoT Hub's service API and `/_emulator/…`) and `/api/dps/…`
(DPS's service API): the explorer hands each request to the HTTPS app in-process with an
`iothubowner` (or DPS owner) SAS token added, so the page sees exactly Azure's answers and
errors, and no certificate is involved. `access` decides who may use any of it.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ...config import Policy
from ..protocol.errors import error_body, hub_error
from ..tls.asgi import ASGIApp
from .access import API_HEADER, COOKIE, Access, session_of

log = logging.getLogger("azure_iot_harness.explorer")

HERE = Path(__file__).parent
MAX_LOGIN_BYTES = 4096


@dataclass(frozen=True)
class ExplorerContext:
    """What the explorer gets: the HTTPS app to call, tokens to call it with, names to show."""

    api: ASGIApp  # the emulator's HTTPS app (every REST surface), called in-process
    hub_host: str
    dps_id_scope: str
    hub_token: Callable[[], str]  # an iothubowner SAS token for the hub's API
    dps_token: Callable[[], str]  # a DPS service SAS token
    owner: Policy  # iothubowner: its connection string signs a browser in beyond loopback
    login_required: bool
    edge: bool  # the emulator runs an edgeHub
    host_names: tuple[str, ...] = ()  # the emulator's own names, accepted as Host on loopback


def build_explorer(ctx: ExplorerContext) -> ASGIApp:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    access = Access(ctx.owner, ctx.login_required, frozenset(n.lower() for n in ctx.host_names))

    def page(name: str, **values: Any) -> Callable[[Request], Any]:
        async def render(request: Request) -> Response:
            context = {
                "hub_host": ctx.hub_host,
                "dps_id_scope": ctx.dps_id_scope,
                "edge": ctx.edge,
                "login_required": ctx.login_required,
                "page": name,
                **values,
                **request.path_params,
            }
            return templates.TemplateResponse(request, f"{name}.html", context)

        return render

    async def login_form(request: Request) -> Response:
        return templates.TemplateResponse(request, "login.html", {"page": "login", "error": None, "hub_host": ctx.hub_host})

    async def login(request: Request) -> Response:
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_LOGIN_BYTES:
                return PlainTextResponse("too large", status_code=413)
        given = urllib.parse.parse_qs(raw.decode("utf-8", "replace")).get("connectionString", [""])[0]
        session = access.sign_in(given)
        if session is None:
            log.info("explorer: sign-in refused for %s (not the iothubowner connection string)", _peer(request))
            context = {"page": "login", "hub_host": ctx.hub_host, "error": "That is not this hub's iothubowner connection string."}
            return templates.TemplateResponse(request, "login.html", context, status_code=401)
        response = RedirectResponse("/devices", status_code=303)
        response.set_cookie(COOKIE, session, httponly=True, samesite="strict", path="/")
        return response

    async def logout(request: Request) -> Response:
        access.sign_out(session_of({"cookie": request.headers.get("cookie", "")}))
        response = RedirectResponse("/login" if ctx.login_required else "/devices", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    routes: list[BaseRoute] = [
        Route("/", lambda request: RedirectResponse("/devices", status_code=303)),
        Route("/devices", page("devices")),
        Route("/devices/{device_id}", page("device", module_id=None)),
        Route("/devices/{device_id}/modules/{module_id}", page("device")),
        Route("/telemetry", page("telemetry")),
        Route("/dps", page("dps")),
        Route("/edge", page("edge")),
        Route("/faults", page("faults")),
        Route("/certification", page("certification")),
        Route("/certification/{report_id:int}", page("certification_report")),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/hub/{path:path}", _Forward(ctx.api, ctx.hub_token), methods=["GET", "PUT", "POST", "PATCH", "DELETE"]),
        Route("/api/dps/{path:path}", _Forward(ctx.api, ctx.dps_token), methods=["GET", "PUT", "POST", "PATCH", "DELETE"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return _Guard(Starlette(routes=routes), access)


class _Forward:
    """An API call of the page, handed to the HTTPS app with a service token instead of cookies."""

    def __init__(self, app: ASGIApp, token: Callable[[], str]) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        path = "/" + scope["path_params"]["path"]
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"authorization", b"cookie", API_HEADER.encode())]
        headers.append((b"authorization", self.token().encode()))
        inner = {
            key: value for key, value in scope.items() if key not in ("path_params", "endpoint", "route", "router", "app")
        }
        inner.update(path=path, raw_path=urllib.parse.quote(path).encode(), root_path="", headers=headers)
        await self.app(inner, receive, send)


class _Guard:
    """Applies `Access` to every request before the pages and the API see it."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]
        api = path.startswith("/api/")
        refusal: Response | None = None
        if not self.access.host_allowed(headers):
            refusal = PlainTextResponse(
                f"the explorer answers loopback host names only, not {headers.get('host', '')!r}", status_code=403
            )
        elif api and API_HEADER not in headers:
            refusal = PlainTextResponse(f"API calls of the explorer carry the {API_HEADER} header", status_code=403)
        elif not (path == "/login" or path.startswith("/static/") or self.access.signed_in(headers)):
            if api:
                err = hub_error("IotHubUnauthorizedAccess", "sign in to the explorer with the iothubowner connection string")
                refusal = JSONResponse(error_body(err), status_code=err.status, headers={"iothub-errorcode": err.error_code})
            else:
                refusal = RedirectResponse("/login", status_code=303)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _peer(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else "?"
