from __future__ import annotations

import sys

import pytest

from azure_iot_harness.emulator.protocol.jsontext import MAX_DEPTH, JsonError, deeper_than, loads


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    "text, deep",
    [
        (nested(MAX_DEPTH), False),
        (nested(MAX_DEPTH + 1), True),
        ('{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1), True),
        ("[]" * 10_000, False),  # many brackets, none deep
        ('["' + "[" * 1000 + '"]', False),  # brackets inside a string
        ('["\\"' + "[" * 1000 + '"]', False),  # ... after an escaped quote
        ('["\\\\", ' + "[" * 100 + "]" * 100 + "]", True),  # an escaped backslash ends nothing
    ],
)
def test_depth_outside_strings(text, deep):
    assert deeper_than(text.encode() if isinstance(text, str) else text) is deep


def test_far_deeper_than_the_recursion_limit_is_refused_not_raised():
    depth = sys.getrecursionlimit() * 5
    for body in (nested(depth), b'{"a":' * depth + b"1" + b"}" * depth):
        with pytest.raises(JsonError, match=f"deeper than {MAX_DEPTH}"):
            loads(body)


def test_loads_parses_what_is_fine_and_names_what_is_not():
    assert loads('{"a": [1, {"b": "[[["}]}') == {"a": [1, {"b": "[[["}]}
    assert loads(b"[1]") == [1]
    with pytest.raises(JsonError):
        loads(b"{not json")
    with pytest.raises(JsonError):
        loads(b"\xff\xfe")
