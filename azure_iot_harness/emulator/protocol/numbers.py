"""Integers from the wire (SAS expiries, query strings, headers, topic fields): parsed with
bounds before anything uses them. Pure functions.

`int()` alone is not a parser for untrusted text: it takes `+1`, ` 1`, `1_0` and other
scripts' digits, and it turns 400 digits into a number that later overflows a float, a
timer or an SQLite column far from where it was read.
"""

from __future__ import annotations

import re

from ...errors import HarnessError

# ASCII digits with an optional minus; 19 digits hold every 64-bit integer.
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_SHOWN = 40  # characters of an offending value quoted in a message

INT64_MAX = 2**63 - 1


class NumberError(HarnessError):
    """Text from the wire that is not an integer within the bounds its field allows."""


def parse_int(text: str, low: int, high: int, *, name: str = "value") -> int:
    """`text` as a decimal integer from `low` to `high`, or NumberError saying why not."""
    if not _INTEGER.fullmatch(text):
        raise NumberError(f"{name} {shown(text)} is not an integer")
    value = int(text)
    if not low <= value <= high:
        raise NumberError(f"{name} {shown(text)} is outside {low}..{high}")
    return value


def shown(text: str) -> str:
    """`text` quoted for a message, cut short when it is long."""
    return repr(text) if len(text) <= _SHOWN else f"{text[:_SHOWN]!r}… ({len(text)} characters)"
