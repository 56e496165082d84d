from __future__ import annotations

import pytest

from azure_iot_harness.emulator.protocol.numbers import NumberError, parse_int


@pytest.mark.parametrize("text, value", [("0", 0), ("42", 42), ("-7", -7), ("9223372036854775807", 2**63 - 1)])
def test_integers_within_bounds(text, value):
    assert parse_int(text, -(2**63), 2**63 - 1) == value


@pytest.mark.parametrize("text", ["", " 1", "1 ", "+1", "1_000", "1.0", "0x10", "\u0661", "\u00b2", "9" * 20, "1" + "0" * 400])
def test_what_int_would_take_or_choke_on_is_not_an_integer(text):
    with pytest.raises(NumberError, match="is not an integer"):
        parse_int(text, 0, 10**30)


def test_bounds_are_checked_and_long_values_are_cut_short_in_the_message():
    with pytest.raises(NumberError, match=r"'9999999999999999999' is outside 0\.\.100"):
        parse_int("9" * 19, 0, 100)
    with pytest.raises(NumberError, match=r"\(400 characters\)"):
        parse_int("x" * 400, 0, 100)
