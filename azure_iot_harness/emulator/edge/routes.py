"""The IoT Edge route language, `[SELECT *] FROM <path> [WHERE <condition>] INTO <sink>`: route
sets loaded from `$edgeHub` desired properties, and evaluating a route against a message. Pure.
The data types are in route_model.py, the lexer/parser/type checks in route_parser.py, values and
built-in functions in route_functions.py.

Parsing (route_parser.py) follows edgeHub's grammar and its longest-match lexer (so `a+b`, `-x` and `5.` are
property names, and `3 -5` is two numbers, as in edgeHub), then type-checks the condition the
way edgeHub compiles it: an ill-typed condition is a route error when the routes are loaded,
not a silent `false` at run time. In particular application and system properties are
strings: `temperature > 30` is refused ("have 'string' and 'number'") and must be written
`as_number(temperature) > 30`, while `$body.temperature > 30` is fine (a `$body` value's type
is known only at run time; of different types, `=` is false and `!=` true; a path that
selects nothing is null, an object or array undefined).

Evaluation is three-valued: anything that meets *undefined* (a missing property, a `$body`
query without JSON content type and encoding, …) is undefined, `false AND undefined` is
false, `true OR undefined` true, and a route is taken only when its condition is `true`.

Deliberate differences from edgeHub. Stricter: text after the sink, a BrokeredEndpoint whose
segments are not `modules`/`inputs`, and `twin_change_includes` (which edgeHub never manages to
compile) are errors. Kinder: one bad route does not fail the whole `$edgeHub` configuration,
it is reported in `RouteSet.errors` and the others work. edgeHub bugs not reproduced:
`is_null` on a `$body` value is true only for null; AND/OR take a `$body` operand on the
right as well as on the left.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .route_functions import (
    DYNAMIC,
    SYSTEM_PROPERTIES,
    UNDEFINED,
    UNDEFINED_TYPE,
    MessageView,
    Value,
    arithmetic,
    compare,
    concat,
    logic_and,
    logic_not,
    logic_operand,
    logic_or,
    negate,
)
from .route_model import (
    DEFAULT_PRIORITY,
    DEFAULT_TTL_SECS,
    MAX_ROUTE_TTL_SECS,
    SUPPORTED_SCHEMA_VERSIONS,
    BrokeredEndpoint,
    Route,
    RouteError,
    Sink,
    Upstream,
    message_source,
    normalize_source,
    source_matches,
)
from .route_parser import (
    AppProperty,
    Binary,
    BodyQuery,
    Literal,
    Node,
    SystemProperty,
    Unary,
    format_condition,
    parse_condition,
    parse_route,
)

__all__ = [
    "DEFAULT_PRIORITY",
    "DEFAULT_TTL_SECS",
    "SUPPORTED_SCHEMA_VERSIONS",
    "SYSTEM_PROPERTIES",
    "BrokeredEndpoint",
    "Route",
    "RouteError",
    "RouteSet",
    "Sink",
    "Upstream",
    "default_routes",
    "evaluate",
    "evaluate_condition",
    "format_condition",
    "load_routes",
    "matches",
    "message_source",
    "normalize_source",
    "parse_condition",
    "parse_route",
    "source_matches",
]


# ---- evaluation -------------------------------------------------------------------------------

def _eval(node: Node, msg: MessageView) -> Value:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, AppProperty):
        return msg.app_property(node.name)
    if isinstance(node, SystemProperty):
        if node.type == UNDEFINED_TYPE:
            return UNDEFINED
        if not node.escaped and msg.has_app("$" + node.name):
            return msg.app_property("$" + node.name)
        return msg.system_property(node.name)
    if isinstance(node, BodyQuery):
        plain = not node.escaped and "[" not in node.text and "]" not in node.text
        if plain and msg.has_app(node.text):
            return msg.app_property(node.text)
        return msg.body_query(node.path)
    if isinstance(node, Unary):
        value = _eval(node.operand, msg)
        if node.op == "-":
            return negate(value)
        return logic_not(logic_operand(value, node.operand.type == DYNAMIC))
    if isinstance(node, Binary):
        op, left = node.op, _eval(node.left, msg)
        if op == "??":
            return left if left is not UNDEFINED else _eval(node.right, msg)
        right = _eval(node.right, msg)
        if op in ("AND", "OR"):
            a = logic_operand(left, node.left.type == DYNAMIC)
            b = logic_operand(right, node.right.type == DYNAMIC)
            return logic_and(a, b) if op == "AND" else logic_or(a, b)
        if op in ("*", "/", "%", "+", "-"):
            return arithmetic(op, left, right)
        if op == "||":
            return concat(left, right)
        return compare(op, left, right, DYNAMIC in (node.left.type, node.right.type))
    args = [_eval(a, msg) for a in node.args]
    return node.signature.run(args, [a.type for a in node.args])


def evaluate_condition(condition: Node, telemetry: Any) -> Value:
    """The value of a condition for a message: str, float, bool, NULL or UNDEFINED."""
    return _eval(condition, MessageView(telemetry))


def _holds(route: Route, msg: MessageView) -> bool:
    return route.condition is None or _eval(route.condition, msg) is True


def evaluate(route: Route, telemetry: Any) -> bool:
    """Whether the route's condition is true for the message (undefined, null or a value
    that is not a bool count as false). The source is not looked at: see `matches`."""
    return _holds(route, MessageView(telemetry))


def matches(route: Route, telemetry: Any) -> bool:
    """Whether the route takes the message: its source matches and its condition holds."""
    return route.matches_source(message_source(telemetry)) and evaluate(route, telemetry)


# ---- route sets from $edgeHub desired properties -----------------------------------------------


@dataclass(frozen=True)
class RouteSet:
    routes: tuple[Route, ...] = ()
    errors: tuple[tuple[str, str], ...] = ()  # (route name, message) of the routes refused
    schema_version: str = "1.0"
    time_to_live_secs: int = DEFAULT_TTL_SECS  # global; negative: messages never expire
    max_store_size_bytes: int | None = None

    def select(self, telemetry: Any) -> list[tuple[Route, Sink]]:
        """The routes that take the message, one per sink: where several routes lead to the
        same sink the one with the highest priority (lowest number) wins, the first listed
        on a tie, and its priority and TTL apply. Ordered by the sinks' first match."""
        source = message_source(telemetry)
        msg = MessageView(telemetry)
        chosen: dict[Sink, Route] = {}
        for route in self.routes:
            if route.matches_source(source) and _holds(route, msg):
                best = chosen.get(route.sink)
                if best is None or route.priority < best.priority:
                    chosen[route.sink] = route
        return [(route, sink) for sink, route in chosen.items()]

    def time_to_live(self, route: Route) -> int | None:
        """Seconds a message routed by `route` may wait for its sink; None: forever."""
        if route.time_to_live_secs > 0:
            return route.time_to_live_secs
        return None if self.time_to_live_secs < 0 else self.time_to_live_secs

    @property
    def sinks(self) -> list[Sink]:
        return list(dict.fromkeys(route.sink for route in self.routes))

    def get(self, name: str) -> Route | None:
        return next((r for r in self.routes if r.name == name), None)

    def __iter__(self):
        return iter(self.routes)

    def __len__(self) -> int:
        return len(self.routes)


def default_routes() -> dict[str, str]:
    """edgeHub's default (local configuration) routes."""
    return {"route": "FROM /* INTO $upstream"}


def load_routes(spec: Mapping[str, Any] | str | bytes) -> RouteSet:
    """Build a RouteSet from `$edgeHub` desired properties (a mapping or its JSON text;
    a deployment manifest's `{"properties.desired": {...}}` wrapper is accepted too).

    A route that edgeHub would refuse lands in `errors` and the others keep working; a
    configuration error outside the routes (schemaVersion, storeAndForwardConfiguration,
    a `routes` that is not an object) raises RouteError."""
    if isinstance(spec, (str, bytes)):
        try:
            spec = json.loads(spec)
        except ValueError as e:
            raise RouteError(f"the $edgeHub desired properties are not valid JSON: {e}") from None
    if not isinstance(spec, Mapping):
        raise RouteError("the $edgeHub desired properties must be a JSON object")
    doc: Mapping[str, Any] = spec
    if isinstance(doc.get("properties.desired"), Mapping):
        doc = doc["properties.desired"]
    spec = doc
    version, minor = _schema_version(spec.get("schemaVersion"))
    routes = spec.get("routes")
    if routes is None:
        routes = {}
    if not isinstance(routes, Mapping):
        raise RouteError("'routes' must be an object mapping route names to routes")
    ttl, max_size = _store_and_forward(spec.get("storeAndForwardConfiguration"))
    good: list[Route] = []
    bad: list[tuple[str, str]] = []
    for name, value in routes.items():
        try:
            route = _route_from_spec(name, value, minor)
        except RouteError as e:
            bad.append((name, f"route {name!r}: {e}"))
        else:
            if route is not None:
                good.append(route)
    return RouteSet(tuple(good), tuple(bad), version, ttl, max_size)


def _schema_version(value: Any) -> tuple[str, int]:
    supported = ", ".join(SUPPORTED_SCHEMA_VERSIONS)
    if value is None:
        raise RouteError(f"the $edgeHub desired properties have no schemaVersion (supported: {supported})")
    text = str(value).strip() if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+){0,2}", text)
    if not m or int(m.group(1)) != 1 or int(m.group(2)) > 3:
        raise RouteError(f"unsupported $edgeHub schemaVersion {value!r} (supported: {supported})")
    return text, int(m.group(2))


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _store_and_forward(value: Any) -> tuple[int, int | None]:
    if value is None:
        return DEFAULT_TTL_SECS, None
    if not isinstance(value, Mapping):
        raise RouteError("storeAndForwardConfiguration must be an object")
    raw = value.get("timeToLiveSecs", DEFAULT_TTL_SECS)
    ttl = _integer(raw)
    if ttl is None or not -(2**31) <= ttl < 2**31:
        raise RouteError(f"storeAndForwardConfiguration.timeToLiveSecs must be an integer, not {raw!r}")
    max_size = None
    limits = value.get("storeLimits")
    if limits is not None:
        raw_size = limits.get("maxSizeBytes") if isinstance(limits, Mapping) else limits
        max_size = _integer(raw_size)
        if max_size is None or max_size < 0:
            raise RouteError(f"storeAndForwardConfiguration.storeLimits.maxSizeBytes must be a positive integer, not {raw_size!r}")
    return ttl, max_size


def _route_from_spec(name: str, value: Any, minor: int) -> Route | None:
    if not isinstance(name, str) or not name.strip():
        raise RouteError("empty route name")
    if isinstance(value, str):
        if not value.strip():
            if minor == 0:
                return None  # schema 1.0: edgeHub skips blank routes
            raise RouteError("the route is empty")
        return replace(parse_route(value), name=name)
    if not isinstance(value, Mapping):
        raise RouteError(f"malformed route specification {value!r}: expected a route string or an object")
    if minor == 0:
        raise RouteError("a route given as an object ({route, priority, timeToLiveSecs}) needs schemaVersion 1.1 or later")
    fields = {str(k).lower(): v for k, v in value.items()}
    text = fields.get("route")
    if not isinstance(text, str) or not text.strip():
        raise RouteError(f"the route object {dict(value)!r} has no 'route' string")
    route = parse_route(text)
    raw_priority = fields.get("priority")
    priority = DEFAULT_PRIORITY if raw_priority is None else _integer(raw_priority)
    if priority is None or not (0 <= priority <= 9 or priority == DEFAULT_PRIORITY):
        raise RouteError(f"invalid priority {raw_priority!r}: priority can only be between 0-9", text)
    raw_ttl = fields.get("timetolivesecs")
    ttl = 0 if raw_ttl is None else _integer(raw_ttl)
    if ttl is None or not 0 <= ttl <= MAX_ROUTE_TTL_SECS:
        raise RouteError(f"invalid timeToLiveSecs {raw_ttl!r}: expected an integer from 0 to {MAX_ROUTE_TTL_SECS}", text)
    return replace(route, name=name, priority=priority, time_to_live_secs=ttl)
