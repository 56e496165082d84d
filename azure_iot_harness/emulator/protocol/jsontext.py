"""JSON from devices and service callers: nesting checked before parsing, without recursion.

`json.loads` recurses once per level of nesting, so a body a few thousand levels deep raises
RecursionError instead of being refused — and whether it does depends on how deep the caller's
stack already is. The check here measures the nesting with regular expressions and iterators,
without recursion, so a refusal never depends on the interpreter's recursion limit. Pure
functions.
"""

from __future__ import annotations

import itertools
import json
import operator
import re
from typing import Any

from ...errors import HarnessError

# Json.NET, behind Azure's REST APIs, refuses documents nested deeper than 64 levels by default.
MAX_DEPTH = 64

# A string (escapes and all) or a stray escape: what brackets inside it mean nothing.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"|\\.', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPEN_AS_2_CLOSE_AS_0 = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


class JsonError(HarnessError):
    """Text that is not JSON, or JSON nested deeper than allowed."""


def deeper_than(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects nest more than `limit` levels deep outside strings."""
    if raw.count(b"[") + raw.count(b"{") <= limit:  # the common case
        return False
    # Brackets only, an opening one as 2 and a closing one as 0: after k of them the running
    # sum is twice the openings, so the depth there is that sum minus k. All at C speed
    # (a 256 KB body of brackets takes about 0.1 s).
    brackets = _STRING.sub(b"", raw).translate(_OPEN_AS_2_CLOSE_AS_0, _NOT_BRACKETS)
    return max(map(operator.sub, itertools.accumulate(brackets), itertools.count(1)), default=0) > limit


def loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text (bytes as UTF-8, a BOM refused as json.loads does), or JsonError."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if deeper_than(data, max_depth):
        raise JsonError(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise JsonError(str(exc)) from None
