"""The IoT Edge route language's data: sinks, routes, message sources, the error. Pure.

Parsing is in route_parser, evaluation and route sets in routes (which re-exports all three).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import HarnessError

if TYPE_CHECKING:
    from .route_parser import Node

DEFAULT_PRIORITY = 2_000_000_000  # edgeHub's RouteFactory.DefaultPriority: below every 0-9
DEFAULT_TTL_SECS = 7200
SUPPORTED_SCHEMA_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
MAX_ROUTE_TTL_SECS = 2**32 - 1  # timeToLiveSecs is a uint in edgeHub


class RouteError(HarnessError):
    """A route, or the `$edgeHub` routes configuration, that edgeHub would refuse."""

    def __init__(self, reason: str, route: str | None = None, position: int | None = None) -> None:
        self.reason, self.route, self.position = reason, route, position
        self.line = self.column = None
        if route is not None and position is not None:
            self.line = route.count("\n", 0, position) + 1
            self.column = position - (route.rfind("\n", 0, position) + 1) + 1
            where = f"line {self.line}, column {self.column}" if "\n" in route else f"column {self.column}"
            message = f"{reason} at {where} of route {route!r}"
        elif route is not None:
            message = f"{reason} in route {route!r}"
        else:
            message = reason
        super().__init__(message)


# ---- sinks and routes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    """`INTO $upstream`: the IoT hub."""

    def __str__(self) -> str:
        return "$upstream"


@dataclass(frozen=True)
class BrokeredEndpoint:
    """`INTO BrokeredEndpoint("/modules/{module}/inputs/{input}")`: a module input."""

    module: str
    input: str

    def __str__(self) -> str:
        return f'BrokeredEndpoint("/modules/{self.module}/inputs/{self.input}")'


Sink = Upstream | BrokeredEndpoint


@dataclass(frozen=True)
class Route:
    """One parsed route; `name`, `priority` and `time_to_live_secs` come from the `$edgeHub`
    route specification (`load_routes`), the rest from the route text (`parse_route`)."""

    text: str
    source: str  # the FROM path as written, e.g. "/messages/*"
    condition: Node | None
    sink: Sink
    name: str = ""
    priority: int = DEFAULT_PRIORITY  # 0 is the highest
    time_to_live_secs: int = 0  # 0: the global storeAndForwardConfiguration.timeToLiveSecs
    condition_text: str | None = None

    @property
    def source_prefix(self) -> str:
        return normalize_source(self.source)

    def matches_source(self, source: str) -> bool:
        return source_matches(self.source, source)


# ---- message sources --------------------------------------------------------------------------


def normalize_source(path: str) -> str:
    """A FROM path as edgeHub compares it: trailing `*` then `/` trimmed, one `/` appended."""
    path = path.strip().rstrip("*")
    if len(path) > 1:
        path = path.rstrip("/")
    return path.strip().rstrip("/") + "/"


def source_matches(route_source: str, message_source: str) -> bool:
    """Case-insensitive prefix match of the normalized paths: `/messages/modules/m1` does not
    take `/messages/modules/m10`, `/messages/*` takes device and module telemetry."""
    candidate = message_source.strip().rstrip("/") + "/"
    return candidate.upper().startswith(normalize_source(route_source).upper())


def message_source(telemetry: Any) -> str:
    """The source path of a message: `/messages` (device telemetry),
    `/messages/modules/{m}[/outputs/{o}]` (module telemetry) or `/twinChangeNotifications`."""
    system = {k.lower(): v for k, v in telemetry.system_properties.items()}
    if (system.get("iothub-message-source") or "").lower() == "twinchangeevents":
        return "/twinChangeNotifications"
    module = telemetry.module_id or system.get("iothub-connection-module-id")
    if module:
        output = system.get("output-name")
        if output and output.strip():
            return f"/messages/modules/{module}/outputs/{output}"
        return f"/messages/modules/{module}"
    return "/messages"
