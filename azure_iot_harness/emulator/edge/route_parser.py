"""The IoT Edge route language's lexer, syntax tree and parser (edgeHub's grammar and type checks). Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .route_functions import (
    BOOL,
    BUILTINS,
    DYNAMIC,
    NULL,
    NULL_TYPE,
    NUMBER,
    STRING,
    UNDEFINED,
    UNDEFINED_TYPE,
    Signature,
    Value,
    number,
    type_label,
)
from .route_model import BrokeredEndpoint, Route, RouteError, Sink, Upstream

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


Node = Literal | AppProperty | SystemProperty | BodyQuery | Unary | Binary | Call

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
