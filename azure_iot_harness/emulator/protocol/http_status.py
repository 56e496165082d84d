"""HTTP/1.1 status lines with their standard reason phrases. Pure functions.

h11, under hypercorn, writes `HTTP/1.1 404 \\r\\n`: legal (the phrase is optional), but the
service SDKs quote the phrase in their errors (`'Not Found'`, `'Precondition Failed'`) and users
match on those texts, so the emulator sends the phrases Azure's front end sends.
"""

from __future__ import annotations

import http
import re

# A complete response head whose status line has no reason phrase.
_BARE_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9]) \r\n")


def reason_phrase(status: int) -> str:
    """The standard phrase of a status code (RFC 9110 and the IANA registry), '' when unknown."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def with_reason_phrase(data: bytes) -> bytes:
    """`data` with the standard phrase added to its status line, when it is the start of a
    response head (status line to blank line in one piece, as h11 writes it) that has none."""
    match = _BARE_STATUS_LINE.match(data)
    if match is None or b"\r\n\r\n" not in data:
        return data
    phrase = reason_phrase(int(match.group(1))).encode("ascii")
    return data[: match.end() - 2] + phrase + data[match.end() - 2 :] if phrase else data
