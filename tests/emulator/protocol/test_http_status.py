from __future__ import annotations

import pytest

from azure_iot_harness.emulator.protocol.http_status import with_reason_phrase


@pytest.mark.parametrize(
    "status, phrase",
    [(200, b"OK"), (404, b"Not Found"), (412, b"Precondition Failed"), (429, b"Too Many Requests"), (101, b"Switching Protocols")],
)
def test_a_bare_status_line_gets_its_phrase(status, phrase):
    head = b"HTTP/1.1 %d \r\ncontent-length: 0\r\n\r\n" % status
    assert with_reason_phrase(head) == b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\n\r\n" % (status, phrase)


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 404 Not Found\r\n\r\n",  # already has one
        b"HTTP/1.1 599 \r\n\r\n",  # no standard phrase
        b"HTTP/1.1 404 \r\ncontent-length: 5",  # not a complete head: not h11's head write
        b'{"HTTP/1.1 404 \r\n\r\n"}',  # a body
        b"",
    ],
)
def test_everything_else_is_left_alone(data):
    assert with_reason_phrase(data) == data
