"""The run time of the IoT Edge route condition language: values, operators, built-in
functions, and what a condition reads from a message (`MessageView`: properties, the one table
of system-property names, the `$body` JSON). Pure; the grammar and type checks are in route_parser.py, evaluation in
routes.py.

edgeHub compiles a condition with static types and rejects ill-typed ones when the route is
loaded; at run time every operation that meets an undefined (or, for strings, a null) operand
yields *undefined*, and a route is taken only when its condition is exactly `true`.

Static types (`STRING`, `NUMBER`, `BOOL`, `NULL_TYPE`, `UNDEFINED_TYPE`, `DYNAMIC`): literals have their
own type, application and system properties are strings, and a `$body` query is `DYNAMIC` (its
type is known only once the JSON body is read). A `DYNAMIC` operand is accepted wherever a
string, number, bool or null is.

Run-time values: `str`, `float` (every number; NaN is undefined), `bool`, and the two
sentinels `NULL` and `UNDEFINED`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from ..protocol import jsontext

STRING, NUMBER, BOOL, NULL_TYPE, UNDEFINED_TYPE, DYNAMIC = (
    "string",
    "number",
    "bool",
    "null",
    "undefined",
    "dynamic",
)
ANY = "any"  # a parameter that accepts every type (is_defined, is_null, …)


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __bool__(self) -> bool:  # neither sentinel is a true condition
        return False


NULL = _Sentinel("null")
UNDEFINED = _Sentinel("undefined")
Value = str | float | bool | _Sentinel


def type_label(t: str) -> str:
    """The name an error message uses for a static type."""
    return "body query" if t == DYNAMIC else t


def number(x: float) -> Value:
    """A run-time number: NaN is how edgeHub represents an undefined number."""
    return UNDEFINED if math.isnan(x) else x


def is_text(v: Value) -> bool:
    return isinstance(v, str)


def is_num(v: Value) -> bool:
    return isinstance(v, float) and not isinstance(v, bool)


# ---- comparison -------------------------------------------------------------------------------

# Values of different types from a `$body` query are ordered by type, the order of edgeHub's
# QueryValueType (Bool < Double < String < Null): `$body.n = 'x'` is false (not undefined) when
# n is a number, and `$body.missing != 'x'` is true.
_TYPE_RANK = {bool: 1, float: 2, str: 3}


def _rank(v: Value) -> int:
    return 4 if v is NULL else _TYPE_RANK[type(v)]


def _ordinal(s: str) -> bytes:
    # .NET's ordinal comparison compares UTF-16 code units.
    return s.encode("utf-16-be", "surrogatepass")


def _cmp(a: Value, b: Value) -> int:
    if isinstance(a, str):
        x, y = _ordinal(a), _ordinal(cast(str, b))  # the type checks compare strings with strings only
        return (x > y) - (x < y)
    return (a > b) - (a < b)  # type: ignore[operator]  # numbers or booleans, paired by the type checks


_COMPARE: dict[str, Callable[[int], bool]] = {
    "=": lambda c: c == 0,
    "!=": lambda c: c != 0,
    "<>": lambda c: c != 0,
    "<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    ">": lambda c: c > 0,
    ">=": lambda c: c >= 0,
}


def compare(op: str, a: Value, b: Value, dynamic: bool) -> Value:
    """`= != <> < <= > >=` on two values that passed the static type check.

    Static operands have the same type: undefined on either side gives undefined, a null
    string (an application property sent without a value) too, and `null = null` is true.
    With a `$body` operand (`dynamic`) values of different types compare by type rank."""
    if a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    if a is NULL or b is NULL:
        if a is NULL and b is NULL:
            return _COMPARE[op](0)
        if not dynamic:
            return UNDEFINED
    if type(a) is not type(b):
        if not dynamic:
            return UNDEFINED
        return _COMPARE[op](_rank(a) - _rank(b))
    return _COMPARE[op](_cmp(a, b))


# ---- logic ------------------------------------------------------------------------------------


def logic_operand(v: Value, dynamic: bool) -> Value:
    """What AND/OR/NOT see: a bool, null (only as a literal's value), else undefined."""
    if isinstance(v, bool):
        return v
    if v is NULL and not dynamic:
        return NULL
    return UNDEFINED


def logic_not(v: Value) -> Value:
    if isinstance(v, bool):
        return not v
    return True if v is NULL else UNDEFINED


def logic_and(a: Value, b: Value) -> Value:
    """Three-valued AND: false wins over undefined; null AND x is null (never true)."""
    if a is False or b is False:
        return False
    if a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    if a is NULL or b is NULL:
        return NULL
    return True


def logic_or(a: Value, b: Value) -> Value:
    """Three-valued OR: true wins over undefined; null OR x is x."""
    if a is True or b is True:
        return True
    if a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    if a is NULL and b is NULL:
        return NULL
    return False


# ---- arithmetic -------------------------------------------------------------------------------


def _divide(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _modulo(a: float, b: float) -> float:
    # C#'s % on doubles truncates (the result has the sign of the dividend), like math.fmod.
    if b == 0 or math.isinf(a):
        return math.nan
    if math.isinf(b):
        return a
    return math.fmod(a, b)


_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _divide,
    "%": _modulo,
}


def arithmetic(op: str, a: Value, b: Value) -> Value:
    if not (is_num(a) and is_num(b)):
        return UNDEFINED
    return number(_ARITHMETIC[op](a, b))  # type: ignore[arg-type]  # operand types are checked when the route is parsed


def negate(a: Value) -> Value:
    return number(-a) if is_num(a) else UNDEFINED  # type: ignore[operator]  # operand types are checked when the route is parsed


def concat(*parts: Value) -> Value:
    if all(is_text(p) for p in parts):
        return "".join(parts)  # type: ignore[arg-type]  # operand types are checked when the route is parsed
    return UNDEFINED


# ---- built-in functions -----------------------------------------------------------------------

_NUMBER_TEXT = re.compile(
    r"\s*(?P<open>\()?\s*(?P<sign>[+-])?\s*"
    r"(?P<mantissa>(?:\d[\d,]*)?(?:\.\d*)?)(?P<exp>[eE][+-]?\d+)?\s*(?P<close>\))?\s*"
)


def parse_number(text: str) -> Value:
    """as_number: .NET's `double.TryParse(NumberStyles.Any, InvariantCulture)` — surrounding
    white space, a sign or accounting parentheses, `,` thousands separators, a decimal point
    and an exponent; `Infinity`/`NaN` spelled out. Anything else is undefined."""
    stripped = text.strip()
    word = stripped.lstrip("+-").lower()
    if word in ("infinity", "∞"):
        return -math.inf if stripped.startswith("-") else math.inf
    m = _NUMBER_TEXT.fullmatch(text)
    if not m or bool(m["open"]) != bool(m["close"]) or (m["open"] and m["sign"]):
        return UNDEFINED
    mantissa = m["mantissa"].replace(",", "")
    if not any(c.isdigit() for c in mantissa):
        return UNDEFINED
    value = float(mantissa + (m["exp"] or ""))
    return -value if m["sign"] == "-" or m["open"] else value


def _math(fn: Callable[[float], float]) -> Callable[[list[Value], list[str]], Value]:
    def run(args: list[Value], _types: list[str]) -> Value:
        (x,) = args
        if not is_num(x):
            return UNDEFINED
        try:
            return number(fn(x))  # type: ignore[arg-type]  # operand types are checked when the route is parsed
        except OverflowError:
            return math.inf
        except ValueError:  # domain error: .NET answers NaN
            return UNDEFINED

    return run


def _power(args: list[Value], _types: list[str]) -> Value:
    x, y = args
    if not (is_num(x) and is_num(y)):
        return UNDEFINED
    try:
        return number(math.pow(x, y))  # type: ignore[arg-type]  # operand types are checked when the route is parsed
    except OverflowError:
        return math.inf
    except ValueError:
        return UNDEFINED


def _whole(fn: Callable[[float], int]) -> Callable[[float], float]:
    return lambda x: float(fn(x)) if math.isfinite(x) else x


def _sign(x: float) -> float:
    return float((x > 0) - (x < 0))


def _as_number(args: list[Value], _types: list[str]) -> Value:
    (x,) = args
    if is_num(x):
        return x
    return parse_number(x) if is_text(x) else UNDEFINED  # type: ignore[arg-type]  # operand types are checked when the route is parsed


def _is_bool(args: list[Value], _types: list[str]) -> Value:
    (x,) = args
    return UNDEFINED if x is UNDEFINED else isinstance(x, bool)


def _is_number(args: list[Value], _types: list[str]) -> Value:
    (x,) = args
    return is_num(x) and math.isfinite(x)  # type: ignore[arg-type]  # operand types are checked when the route is parsed


def _is_string(args: list[Value], _types: list[str]) -> Value:
    return is_text(args[0])


def _is_defined(args: list[Value], _types: list[str]) -> Value:
    return args[0] is not UNDEFINED


def _is_null(args: list[Value], types: list[str]) -> Value:
    (x,) = args
    if x is UNDEFINED and types[0] == DYNAMIC:
        return UNDEFINED
    return x is NULL


def _false(_args: list[Value], _types: list[str]) -> Value:
    return False


def _strings(fn: Callable[..., object], result: Callable[[Any], Value] = lambda r: r) -> Callable:
    def run(args: list[Value], _types: list[str]) -> Value:
        if not all(is_text(a) for a in args):
            return UNDEFINED
        return result(fn(*args))

    return run


def _substring(args: list[Value], _types: list[str]) -> Value:
    s, start, *rest = args
    if not is_text(s) or not is_num(start) or (rest and not is_num(rest[0])):
        return UNDEFINED
    n = len(s)  # type: ignore[arg-type]  # operand types are checked when the route is parsed
    if not rest:
        if 0 <= start <= n:  # type: ignore[operator]  # operand types are checked when the route is parsed
            return s[int(start) :]  # type: ignore[index, arg-type]  # operand types are checked when the route is parsed
        return UNDEFINED
    length = rest[0]
    if 0 <= start < n and 0 <= length <= n - start:  # type: ignore[operator]  # operand types are checked when the route is parsed
        i = int(start)  # type: ignore[arg-type]  # operand types are checked when the route is parsed
        return s[i : i + int(length)]  # type: ignore[index, arg-type]  # operand types are checked when the route is parsed
    return UNDEFINED


@dataclass(frozen=True)
class Signature:
    params: tuple[str, ...]
    result: str
    run: Callable[[list[Value], list[str]], Value]
    variadic: bool = False  # the last parameter repeats (at least len(params) arguments)

    def accepts(self, types: list[str]) -> bool:
        if self.variadic:
            if len(types) < len(self.params):
                return False
            wanted = list(self.params) + [self.params[-1]] * (len(types) - len(self.params))
        else:
            if len(types) != len(self.params):
                return False
            wanted = list(self.params)
        return all(p == ANY or p == t or t == DYNAMIC for p, t in zip(wanted, types))

    def describe(self, name: str) -> str:
        params = ", ".join(self.params) + (", …" if self.variadic else "")
        return f"{name}({params})"


def _one(t: str, result: str, run: Callable) -> list[Signature]:
    return [Signature((t,), result, run)]


BUILTINS: dict[str, list[Signature]] = {
    # math
    "abs": _one(NUMBER, NUMBER, _math(abs)),
    "exp": _one(NUMBER, NUMBER, _math(math.exp)),
    "power": [Signature((NUMBER, NUMBER), NUMBER, _power)],
    "square": _one(NUMBER, NUMBER, _math(lambda x: math.pow(x, 2))),
    "ceiling": _one(NUMBER, NUMBER, _math(_whole(math.ceil))),
    "floor": _one(NUMBER, NUMBER, _math(_whole(math.floor))),
    "sign": _one(NUMBER, NUMBER, _math(_sign)),
    "sqrt": _one(NUMBER, NUMBER, _math(math.sqrt)),
    # type checking
    "as_number": [Signature((STRING,), NUMBER, _as_number), Signature((NUMBER,), NUMBER, _as_number)],
    "is_bool": [Signature((BOOL,), BOOL, _is_bool), Signature((ANY,), BOOL, _false)],
    "is_defined": _one(ANY, BOOL, _is_defined),
    "is_null": _one(ANY, BOOL, _is_null),
    "is_number": [Signature((NUMBER,), BOOL, _is_number), Signature((ANY,), BOOL, _false)],
    "is_string": [Signature((STRING,), BOOL, _is_string), Signature((ANY,), BOOL, _false)],
    # strings (ordinal, no culture)
    "concat": [Signature((STRING, STRING), STRING, lambda args, _t: concat(*args), variadic=True)],
    "length": _one(STRING, NUMBER, _strings(len, float)),
    "lower": _one(STRING, STRING, _strings(str.lower)),
    "upper": _one(STRING, STRING, _strings(str.upper)),
    "substring": [
        Signature((STRING, NUMBER), STRING, _substring),
        Signature((STRING, NUMBER, NUMBER), STRING, _substring),
    ],
    "index_of": [Signature((STRING, STRING), NUMBER, _strings(str.find, float))],
    "starts_with": [Signature((STRING, STRING), BOOL, _strings(str.startswith))],
    "ends_with": [Signature((STRING, STRING), BOOL, _strings(str.endswith))],
    "contains": [Signature((STRING, STRING), BOOL, _strings(lambda s, f: f in s))],
}


# ---- what a condition reads from a message -----------------------------------------------------

# Route-language system property (`$name`, case-insensitive) -> the `Telemetry.system_properties`
# key holding it (Event Hubs-style names, see protocol/messages.py). The one table of this.
SYSTEM_PROPERTIES: dict[str, str] = {
    "messageId": "message-id",
    "correlationId": "correlation-id",
    "cid": "correlation-id",  # where edgeHub itself files a device's $.cid
    "userId": "user-id",
    "to": "to",
    "ack": "iothub-ack",
    "contentType": "content-type",
    "contentEncoding": "content-encoding",
    "absolute-expiry-time": "absolute-expiry-time",
    "creationTime": "creation-time",
    "enqueuedTime": "iothub-enqueuedtime",
    "connectionDeviceId": "iothub-connection-device-id",
    "connectionModuleId": "iothub-connection-module-id",
    "connectionDeviceGenerationId": "iothub-connection-auth-generation-id",
    "connectionAuthMethod": "iothub-connection-auth-method",
    "outputName": "output-name",
    "inputName": "input-name",
    "messageSchema": "message-schema",
    "operation": "iothub-operation",
    "iothub-interface-id": "iothub-interface-id",
    "componentName": "dt-subject",
    "dt-subject": "dt-subject",
    "modelId": "dt-dataschema",
}
_SYSTEM_KEYS = {name.lower(): key for name, key in SYSTEM_PROPERTIES.items()}
_BODY_ENCODINGS = {"utf-8": "utf-8", "utf-16": "utf-16-le", "utf-32": "utf-32-le"}


_UNSET = object()


def _fold(properties: Mapping[str, Any]) -> dict[str, Any]:
    folded: dict[str, Any] = {}
    for key, value in properties.items():
        folded.setdefault(key.lower(), value)
    return folded


def _json_value(value: Any) -> Value:
    if value is None:
        return NULL
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        try:
            return number(float(value))
        except OverflowError:
            return float("inf") if value > 0 else float("-inf")
    return UNDEFINED  # an object or an array: only leaf values compare


class MessageView:
    """One message as a condition reads it: case-insensitive property names, system properties
    by their route-language names, and the JSON body parsed once, on first use."""

    def __init__(self, telemetry: Any) -> None:
        self.telemetry = telemetry
        self.app = _fold(telemetry.properties)
        self.system = _fold(telemetry.system_properties)
        self._body: Any = _UNSET

    def has_app(self, name: str) -> bool:
        return name.lower() in self.app

    def app_property(self, name: str) -> Value:
        key = name.lower()
        if key not in self.app:
            return UNDEFINED
        value = self.app[key]
        return NULL if value is None else value

    def system_property(self, name: str) -> Value:
        key = _SYSTEM_KEYS.get(name.lower())
        if key is None:
            return UNDEFINED
        value = self.system.get(key)
        if value is None and key == "iothub-connection-device-id":
            value = self.telemetry.device_id or None
        if value is None and key == "iothub-connection-module-id":
            value = self.telemetry.module_id or None
        return UNDEFINED if value is None else value

    def body(self) -> Any:
        if self._body is _UNSET:
            self._body = self._parse_body()
        return self._body

    def _parse_body(self) -> Any:
        content_type = self.system_property("contentType")
        encoding = self.system_property("contentEncoding")
        if not isinstance(content_type, str) or content_type.lower() != "application/json":
            return UNDEFINED
        codec = _BODY_ENCODINGS.get(encoding.lower()) if isinstance(encoding, str) else None
        if codec is None:
            return UNDEFINED
        text = bytes(self.telemetry.body).decode(codec, errors="replace").lstrip("\ufeff")
        try:
            document = jsontext.loads(text)
        except jsontext.JsonError:
            return UNDEFINED
        return document if isinstance(document, dict) else UNDEFINED

    def body_query(self, path: tuple[tuple[str, int | None], ...]) -> Value:
        current = self.body()
        if current is UNDEFINED:
            return UNDEFINED
        for name, index in path:
            if not isinstance(current, dict) or name not in current:
                return NULL  # edgeHub: a path that selects nothing is null
            current = current[name]
            if index is not None:
                if not isinstance(current, list) or index >= len(current):
                    return NULL
                current = current[index]
        return _json_value(current)
