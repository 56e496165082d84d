"""The IoT Edge route language: `[SELECT *] FROM <path> [WHERE <condition>] INTO <sink>`. Pure.

Parsing follows edgeHub's grammar and its longest-match lexer (so `a+b`, `-x` and `5.` are
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
from dataclasses import dataclass, field, replace
from typing import Any, Union

from ...errors import HarnessError
from .route_functions import (
    BOOL,
    BUILTINS,
    DYNAMIC,
    NULL,
    NULL_TYPE,
    NUMBER,
    STRING,
    SYSTEM_PROPERTIES,
    UNDEFINED,
    UNDEFINED_TYPE,
    MessageView,
    Signature,
    Value,
    arithmetic,
    compare,
    concat,
    logic_and,
    logic_not,
    logic_operand,
    logic_or,
    negate,
    number,
    type_label,
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


Sink = Union[Upstream, BrokeredEndpoint]


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


# ---- lexer ------------------------------------------------------------------------------------

_ESC = r"""\\(?:["'\\]|u[0-9a-fA-F]{4})"""
_NOT_ID = '()<>@,;:\\"/?={} \t\n\r'  # characters no name may contain
# Token kinds in edgeHub's rule order: the longest match wins, a tie goes to the earlier rule.
_RULES: list[tuple[str, list[str]]] = [
    ("{", [r"\{"]),
    ("}", [r"\}"]),
    ("SELECT", [r"(?i:select)"]),
    ("FROM", [r"(?i:from)"]),
    ("WHERE", [r"(?i:where)"]),
    ("INTO", [r"(?i:into)"]),
    ("STRING", [rf'"(?:{_ESC}|[^"\\])*"', rf"'(?:{_ESC}|[^'\\])*'"]),
    ("UNTERMINATED_STRING", [rf'"(?:{_ESC}|[^"\\])*', rf"'(?:{_ESC}|[^'\\])*"]),
    ("INTEGER", [r"-?[0-9]+"]),
    ("HEX", [r"0[xX][0-9a-fA-F]+"]),
    ("REAL", [r"-?[0-9]*\.[0-9]+(?:[eE][+-]?[0-9]+)?", r"-?[0-9]*[eE][+-]?[0-9]+"]),
    ("true", ["true"]),
    ("false", ["false"]),
    ("null", ["null"]),
    ("undefined", ["undefined"]),
    *((op, [re.escape(op)]) for op in ["(", ")", ",", "+", "-", "*", "/", "%"]),
    ("AND", [r"(?i:and)"]),
    ("OR", [r"(?i:or)"]),
    ("NOT", [r"(?i:not)"]),
    *((op, [re.escape(op)]) for op in ["=", "!=", "<>", "<=", ">=", ">", "<", "||", "??"]),
    ("SYS_PROP", [rf"\$[^{re.escape(_NOT_ID)}]+"]),
    ("ID", [rf"[^{re.escape(_NOT_ID)}\[\]]+"]),
    ("QUERY_PATH", [rf"[^{re.escape(_NOT_ID)}]+"]),
    ("WS", [r"[ \t\r\n]+"]),
    ("COMMENT", [r"(?s:/\*.*?\*/)"]),
    ("UNKNOWN", [r"(?s:.)"]),
]
_COMPILED = [(kind, [re.compile(p) for p in patterns]) for kind, patterns in _RULES]


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    pos: int

    @property
    def end(self) -> int:
        return self.pos + len(self.text)


def _tokenize(text: str) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(text):
        kind, length = "UNKNOWN", 0
        for rule, patterns in _COMPILED:
            for pattern in patterns:
                m = pattern.match(text, pos)
                if m and m.end() - pos > length:
                    kind, length = rule, m.end() - pos
        if kind not in ("WS", "COMMENT"):
            tokens.append(_Token(kind, text[pos : pos + length], pos))
        pos += length
    tokens.append(_Token("EOF", "", len(text)))
    return tokens


# ---- condition syntax tree --------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    value: Value
    type: str
    pos: int
    text: str


@dataclass(frozen=True)
class AppProperty:
    name: str
    pos: int
    type: str = STRING


@dataclass(frozen=True)
class SystemProperty:
    """`$name` (an application property literally named `$name` wins) or `{$name}`."""

    name: str
    escaped: bool
    pos: int
    type: str = STRING  # UNDEFINED_TYPE for names with `[`/`]`, which never resolve


@dataclass(frozen=True)
class BodyQuery:
    """`$body.a.b[0].c` (an application property literally named so wins) or `{$body.…}`."""

    path: tuple[tuple[str, int | None], ...]
    text: str
    escaped: bool
    pos: int
    type: str = DYNAMIC


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "NOT"
    operand: Node
    pos: int
    type: str


@dataclass(frozen=True)
class Binary:
    op: str  # * / % + - || < <= > >= = != <> AND OR ??
    left: Node
    right: Node
    pos: int
    type: str


@dataclass(frozen=True)
class Call:
    name: str  # lower case
    args: tuple[Node, ...]
    pos: int
    type: str
    signature: Signature = field(compare=False, repr=False)


Node = Union[Literal, AppProperty, SystemProperty, BodyQuery, Unary, Binary, Call]

_BINARY_PRECEDENCE = {
    **dict.fromkeys(["*", "/", "%"], 6),
    **dict.fromkeys(["+", "-", "||"], 5),
    **dict.fromkeys(["<", "<=", ">", ">="], 4),
    **dict.fromkeys(["=", "!=", "<>"], 3),
    "AND": 2,
    "OR": 1,
    "??": 0,
}
_VALUE_TYPES = (STRING, NUMBER, BOOL, NULL_TYPE, DYNAMIC)
_STRING_HINT = " (application and system properties are strings: convert with as_number(...))"
_BODY_SEGMENT = re.compile(r"([^.\[\]]+)(?:\[([0-9]+)\])?")


def _same_types(left: str, right: str) -> bool:
    return left == right or (DYNAMIC in (left, right) and left in _VALUE_TYPES and right in _VALUE_TYPES)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def peek(self, ahead: int = 1) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        tok = self.tok
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def error(self, reason: str, pos: int | None = None) -> RouteError:
        return RouteError(reason, self.text, self.tok.pos if pos is None else pos)

    def found(self, tok: _Token | None = None) -> str:
        tok = tok or self.tok
        if tok.kind == "EOF":
            return "the end of the route"
        if tok.kind == "UNKNOWN":
            return f"invalid symbol {tok.text!r}"
        return repr(tok.text)

    def expect(self, kind: str, what: str) -> _Token:
        if self.tok.kind != kind:
            raise self.error(f"expected {what}, found {self.found()}")
        return self.advance()

    # -- route --

    def route(self) -> Route:
        if self.tok.kind == "EOF":
            raise self.error("empty route (expected FROM <source> INTO <sink>)")
        if self.tok.kind == "SELECT":
            self.advance()
            self.expect("*", "'*' after SELECT")
        self.expect("FROM", "FROM")
        source = self.source()
        condition = condition_text = None
        if self.tok.kind == "WHERE":
            self.advance()
            if self.tok.kind in ("INTO", "EOF"):
                raise self.error("expected a condition after WHERE")
            start = self.tok.pos
            condition = self.expression(0)
            condition_text = self.text[start : self.tokens[self.i - 1].end]
        if self.tok.kind != "INTO":
            if self.tok.kind == ")":
                raise self.error("unmatched closing ')'")
            expected = "INTO" if condition is not None else "WHERE or INTO"
            raise self.error(f"expected {expected}, found {self.found()}")
        self.advance()
        sink = self.sink()
        if self.tok.kind != "EOF":
            raise self.error(f"unexpected {self.found()} after the sink")
        return Route(self.text, source, condition, sink, condition_text=condition_text)

    def source(self) -> str:
        parts = [self.expect("/", "a source path starting with '/' (e.g. /messages/*)").text]
        while True:
            if self.tok.kind not in ("*", "ID"):
                raise self.error(f"expected '*' or a name in the source path, found {self.found()}")
            parts.append(self.advance().text)
            if self.tok.kind != "/":
                return "".join(parts)
            parts.append(self.advance().text)

    def sink(self) -> Sink:
        tok = self.tok
        if tok.kind == "SYS_PROP":
            self.advance()
            if tok.text.lower() != "$upstream":
                raise self.error(f"system endpoint {tok.text!r} is not supported (the only one is $upstream)", tok.pos)
            return Upstream()
        if tok.kind == "ID" and self.peek().kind == "(":
            self.advance()
            self.advance()
            address = self.expect("STRING", 'a quoted endpoint address, e.g. "/modules/{moduleId}/inputs/{input}"')
            self.expect(")", "')'")
            if tok.text.lower() != "brokeredendpoint":
                raise self.error(f"function endpoint {tok.text!r} is not supported (only BrokeredEndpoint)", tok.pos)
            return self.brokered(address)
        raise self.error(f'expected $upstream or BrokeredEndpoint("/modules/{{moduleId}}/inputs/{{input}}"), found {self.found()}')

    def brokered(self, tok: _Token) -> BrokeredEndpoint:
        address = tok.text[1:-1].strip()
        address = address[1:] if address.startswith("/") else address
        address = address[:-1] if address.endswith("/") else address
        items = address.split("/")
        if len(items) != 4 or items[0] != "modules" or items[2] != "inputs" or not items[1] or not items[3]:
            raise self.error(
                f"endpoint address {tok.text} could not be parsed: expected /modules/{{moduleId}}/inputs/{{input}}",
                tok.pos,
            )
        return BrokeredEndpoint(items[1], items[3])

    # -- condition --

    def condition(self) -> Node:
        if self.tok.kind == "EOF":
            raise self.error("empty condition")
        node = self.expression(0)
        if self.tok.kind != "EOF":
            if self.tok.kind == ")":
                raise self.error("unmatched closing ')'")
            raise self.error(f"unexpected {self.found()}")
        return node

    def expression(self, min_precedence: int) -> Node:
        left = self.unary()
        while True:
            op = self.tok
            precedence = _BINARY_PRECEDENCE.get(op.kind)
            if precedence is None or precedence < min_precedence:
                return left
            self.advance()
            right = self.expression(precedence + 1)
            left = self.binary(op, left, right)

    def unary(self) -> Node:
        op = self.tok
        if op.kind in ("-", "NOT"):
            self.advance()
            operand = self.unary()
            name = "NOT" if op.kind == "NOT" else "-"
            allowed = (BOOL, NULL_TYPE, DYNAMIC) if name == "NOT" else (NUMBER, DYNAMIC)
            if operand.type not in allowed:
                expected = "bool" if name == "NOT" else "number"
                raise self.error(
                    f"invalid operand to unary operator {op.text!r}: have {type_label(operand.type)!r}, expected {expected!r}",
                    op.pos,
                )
            return Unary(name, operand, op.pos, BOOL if name == "NOT" else NUMBER)
        return self.primary()

    def binary(self, op: _Token, left: Node, right: Node) -> Node:
        name = op.kind
        lt, rt = left.type, right.type
        if name in ("*", "/", "%", "+", "-"):
            ok, expected, result = lt in (NUMBER, DYNAMIC) and rt in (NUMBER, DYNAMIC), "'number' and 'number'", NUMBER
        elif name == "||":
            ok, expected, result = lt in (STRING, DYNAMIC) and rt in (STRING, DYNAMIC), "'string' and 'string'", STRING
        elif name in ("AND", "OR"):
            logical = (BOOL, NULL_TYPE, UNDEFINED_TYPE, DYNAMIC)
            ok, expected, result = lt in logical and rt in logical, "'bool' and 'bool'", BOOL
        else:  # comparison, equality, coalesce: both sides of one type
            ok = _same_types(lt, rt)
            expected = f"{type_label(lt)!r} and {type_label(lt)!r}"
            result = BOOL if name != "??" else (DYNAMIC if DYNAMIC in (lt, rt) else lt)
        if not ok:
            hint = _STRING_HINT if {lt, rt} == {STRING, NUMBER} and name not in ("||", "??") else ""
            raise self.error(
                f"invalid operands to binary operator {op.text!r}: have {type_label(lt)!r} and "
                f"{type_label(rt)!r}, expected {expected}{hint}",
                op.pos,
            )
        return Binary(name, left, right, op.pos, result)

    def primary(self) -> Node:
        tok = self.tok
        kind = tok.kind
        if kind == "(":
            self.advance()
            node = self.expression(0)
            if self.tok.kind != ")":
                raise self.error(f"missing closing ')' (opened at column {tok.pos + 1}), found {self.found()}")
            self.advance()
            return node
        if kind in ("STRING", "INTEGER", "HEX", "REAL", "true", "false", "null", "undefined"):
            self.advance()
            return _literal(tok)
        if kind == "UNTERMINATED_STRING":
            raise self.error("unterminated string")
        if kind == "SYS_PROP":
            self.advance()
            return self.system_property(tok, escaped=False)
        if kind == "{":
            self.advance()
            prop = self.expect("SYS_PROP", "a system property name after '{' (e.g. {$contentType})")
            self.expect("}", "'}'")
            return self.system_property(prop, escaped=True)
        if kind == "ID":
            self.advance()
            if self.tok.kind == "(":
                return self.call(tok)
            return AppProperty(tok.text, tok.pos)
        if kind == "QUERY_PATH":
            raise self.error(f"invalid property name {tok.text!r} ('[' and ']' are only allowed in $body queries)")
        if kind == ")":
            raise self.error("unmatched closing ')'")
        raise self.error(f"expected an expression, found {self.found()}")

    def system_property(self, tok: _Token, escaped: bool) -> Node:
        text = tok.text
        if text[:6].lower() == "$body.":
            return BodyQuery(self.body_path(text[6:], tok), text, escaped, tok.pos)
        name = text[1:]
        untyped = "[" in name or "]" in name
        return SystemProperty(name, escaped, tok.pos, UNDEFINED_TYPE if untyped else STRING)

    def body_path(self, query: str, tok: _Token) -> tuple[tuple[str, int | None], ...]:
        if not query:
            raise self.error("$body query cannot be empty", tok.pos)
        path = []
        for segment in query.split("."):
            m = _BODY_SEGMENT.fullmatch(segment)
            if not m or m.group(1).isdigit():
                raise self.error(
                    f"error in $body query {tok.text!r}: expected name[.name…], each name optionally "
                    f"followed by one [index] (got {segment!r})",
                    tok.pos,
                )
            path.append((m.group(1), None if m.group(2) is None else int(m.group(2))))
        return tuple(path)

    def call(self, name_tok: _Token) -> Node:
        self.advance()  # (
        args: list[Node] = []
        if self.tok.kind != ")":
            args.append(self.expression(0))
            while self.tok.kind == ",":
                self.advance()
                args.append(self.expression(0))
        if self.tok.kind != ")":
            raise self.error(f"missing closing ')' of {name_tok.text}(…), found {self.found()}")
        self.advance()
        name = name_tok.text.lower()
        if name == "twin_change_includes":
            raise self.error(
                "twin_change_includes is not supported in edgeHub routes (edgeHub refuses it as an "
                "invalid built-in function: twin change notifications are not routed through conditions)",
                name_tok.pos,
            )
        signatures = BUILTINS.get(name)
        if signatures is None:
            raise self.error(f"invalid built-in function {name_tok.text!r}", name_tok.pos)
        types = [a.type for a in args]
        for signature in signatures:
            if signature.accepts(types):
                return Call(name, tuple(args), name_tok.pos, signature.result, signature)
        given = f"{name_tok.text}({', '.join(type_label(t) for t in types)})"
        expected = " or ".join(s.describe(name) for s in signatures)
        raise self.error(f"invalid arguments to built-in function {name_tok.text!r}: {given}, expected {expected}", name_tok.pos)


_UNESCAPE = re.compile(r"""\\(u[0-9a-fA-F]{4}|["'\\])""")


def _literal(tok: _Token) -> Literal:
    text, kind = tok.text, tok.kind
    if kind == "STRING":
        value: Value = _UNESCAPE.sub(lambda m: chr(int(m.group(1)[1:], 16)) if len(m.group(1)) > 1 else m.group(1), text[1:-1])
        return Literal(value, STRING, tok.pos, text)
    if kind in ("true", "false"):
        return Literal(kind == "true", BOOL, tok.pos, text)
    if kind == "null":
        return Literal(NULL, NULL_TYPE, tok.pos, text)
    if kind == "undefined":
        return Literal(UNDEFINED, UNDEFINED_TYPE, tok.pos, text)
    if kind == "HEX":
        raw = int(text[2:], 16)  # a 64-bit two's-complement long, as edgeHub parses it
        value = UNDEFINED if raw >= 2**64 else float(raw - 2**64 if raw >= 2**63 else raw)
        return Literal(value, NUMBER, tok.pos, text)
    try:
        value = number(float(text))
    except ValueError:  # "e5" lexes as a real and parses as nothing
        value = UNDEFINED
    return Literal(value, NUMBER, tok.pos, text)


def parse_route(text: str) -> Route:
    """Parse and type-check one route. Raises RouteError naming the route and the column."""
    if not isinstance(text, str):
        raise RouteError(f"a route must be a string, not {type(text).__name__}")
    return _Parser(text).route()


def parse_condition(text: str) -> Node:
    """Parse and type-check a bare condition (what follows WHERE)."""
    return _Parser(text).condition()


def format_condition(node: Node | None) -> str:
    """A fully parenthesised rendering of a condition: shows how it was grouped."""
    if node is None:
        return "true"
    if isinstance(node, Literal):
        return node.text
    if isinstance(node, AppProperty):
        return node.name
    if isinstance(node, SystemProperty):
        return f"{{${node.name}}}" if node.escaped else f"${node.name}"
    if isinstance(node, BodyQuery):
        return f"{{{node.text}}}" if node.escaped else node.text
    if isinstance(node, Unary):
        return f"(NOT {format_condition(node.operand)})" if node.op == "NOT" else f"(-{format_condition(node.operand)})"
    if isinstance(node, Binary):
        return f"({format_condition(node.left)} {node.op} {format_condition(node.right)})"
    return f"{node.name}({', '.join(format_condition(a) for a in node.args)})"


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
    if isinstance(spec.get("properties.desired"), Mapping):
        spec = spec["properties.desired"]
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
