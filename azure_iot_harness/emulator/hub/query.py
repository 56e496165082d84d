"""The small part of IoT Hub's query language the emulator answers (POST /devices/query).

`SELECT * FROM devices | devices.modules [WHERE a = 'b' AND …]` and `SELECT COUNT() AS x FROM …`;
anything else is refused with "not supported by the emulator", never guessed. Results are
paged with an opaque continuation token bound to the query text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...errors import ServiceError
from ..protocol.errors import hub_error
from ..protocol.numbers import INT64_MAX, NumberError, parse_int
from .context import HubContext

# Query page size when x-ms-max-item-count is absent, and the most the emulator hands out in
# one page. UNVERIFIED against Azure, which only says it "may use a different value".
DEFAULT_PAGE = 100
MAX_PAGE = 1000


def answer(text: str, request: Request, hub: HubContext) -> Response:
    """One page of the query's results, with the paging headers IoT Hub sends."""
    parsed = parse_query(text)
    page_size = _page_size(request)
    offset = _decode_continuation(request.headers.get("x-ms-continuation"), text)
    return _query_response(run_query(parsed, hub), text, offset, page_size, parsed.count_alias is None)


# ---- query: parsing ------------------------------------------------------------------------------

SUPPORTED = (
    "SELECT * | SELECT COUNT() AS alias, FROM devices | devices.modules, "
    "optional WHERE field = literal [AND ...] on deviceId, moduleId, status, connectionState, modelId, capabilities.iotEdge"
)
_FIELDS = {
    "devices": ("deviceId", "status", "connectionState", "modelId", "capabilities.iotEdge"),
    "devices.modules": ("deviceId", "moduleId", "status", "connectionState", "modelId"),
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
        try:  # int() refuses more than 4,300 digits; a float becomes inf instead of failing
            return float(tok.text) if "." in tok.text else int(tok.text)
        except ValueError:
            raise hub_error("ArgumentInvalid", f"the number at position {tok.pos} has too many digits") from None
    if tok.kind == "name" and tok.text.lower() in ("true", "false"):
        return tok.text.lower() == "true"
    raise _unsupported(f"the value {_describe(tok)}")


def _describe(tok: _Token) -> str:
    return "the end of the query" if tok.kind == "end" else f"{tok.text!r} at position {tok.pos}"


# ---- query: running and paging -------------------------------------------------------------------


def run_query(q: Query, hub: HubContext) -> list[dict]:
    registry = hub.registry
    identities = registry.devices() if q.source == "devices" else registry.all_modules()
    views = (hub.twins.view((i["deviceId"], i.get("moduleId"))) for i in identities)
    twins = [t for t in views if all(_matches(t, f, v) for f, v in q.conditions)]
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


def _page_size(request: Request) -> int:
    raw = request.headers.get("x-ms-max-item-count")
    if raw is None:
        return DEFAULT_PAGE
    try:
        size = parse_int(raw, 0, INT64_MAX)
    except NumberError:
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
