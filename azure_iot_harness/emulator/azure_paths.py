"""How IoT Hub and DPS match request paths, applied once to the whole HTTPS app (see web.py).

Both services ignore a trailing slash (the Node service SDK's `Registry.list()` sends
`GET /devices/?api-version=…`) and match the fixed words of a route without regard to case (the
Node DPS service SDK sends `/enrollmentgroups/{id}/attestationmechanism`); identifiers in the
path keep their case. The emulator's own `/_emulator/` API is not Azure's and is left as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

OWN_PREFIX = "/_emulator/"


def is_azure_path(path: str) -> bool:
    return not (path + "/").startswith(OWN_PREFIX)


class IgnoreTrailingSlash:
    """ASGI middleware: `/devices/` is `/devices`, for every Azure route (HTTP only)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/") and is_azure_path(path):
            scope = dict(scope, path=path.rstrip("/") or "/")
            raw = scope.get("raw_path")
            if isinstance(raw, bytes):
                scope["raw_path"] = raw.rstrip(b"/") or b"/"
        await self.app(scope, receive, send)


def match_case_insensitively(routes: Iterable[BaseRoute]) -> None:
    """Make the fixed words of every Azure route match in any case; captured ids are untouched."""
    for route in routes:
        if isinstance(route, Route) and is_azure_path(route.path):
            route.path_regex = re.compile(route.path_regex.pattern, re.IGNORECASE)
