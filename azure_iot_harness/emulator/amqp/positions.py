"""Where an Event Hubs receiver starts: the selector filter of its attach. Pure.

The SDKs send `amqp.annotation.x-opt-offset > '-1'` (earliest), `… > '@latest'`,
`amqp.annotation.x-opt-sequence-number >[=] 'n'`, `amqp.annotation.x-opt-enqueued-time > 'ms'`
(quoted or, from .NET and the CLI's `x-opt-enqueuedtimeutc`, not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EXPRESSION = re.compile(r"^\s*amqp\.annotation\.(x-opt-[a-z-]+)\s*(>=|>|=)\s*'?([^']*)'?\s*$", re.IGNORECASE)
SELECTOR_KEY = "apache.org:selector-filter:string"


class PositionError(ValueError):
    """The filter names no position this endpoint understands."""


@dataclass(frozen=True)
class Position:
    kind: str  # earliest, latest, offset, sequence, time
    value: int = 0
    inclusive: bool = False


EARLIEST = Position("earliest")


def parse(expression: str) -> Position:
    m = _EXPRESSION.match(expression)
    if not m:
        raise PositionError(f"unsupported filter {expression!r}")
    field, op, raw = m.group(1).lower(), m.group(2), m.group(3).strip()
    inclusive = op in (">=", "=")
    if raw == "@latest":
        return Position("latest")
    try:
        value = int(raw)
    except ValueError:
        raise PositionError(f"the value {raw!r} of {field} is not a number") from None
    if field == "x-opt-offset":
        if value == -1:
            return EARLIEST
        return Position("offset", value, inclusive)
    if field == "x-opt-sequence-number":
        return Position("sequence", value, inclusive)
    if field in ("x-opt-enqueued-time", "x-opt-enqueuedtimeutc"):
        return Position("time", value, inclusive)
    raise PositionError(f"unsupported filter field {field!r}")
