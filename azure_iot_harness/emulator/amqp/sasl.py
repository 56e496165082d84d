"""The SASL exchange in front of proton's engine. Sans-IO: bytes in, bytes out.

Proton's server offers only ANONYMOUS and EXTERNAL without Cyrus; Azure's clients use PLAIN
(uamqp with `user:password@` in the address), MSSBCBS (.NET) and ANONYMOUS followed by a CBS
put-token. This front end offers those three and accepts whichever the client picks. PLAIN's
credentials (a policy and a SAS token or key) are judged here by the `judge` given, and refused
with the SASL outcome `auth` (then the connection closes), as Azure answers a wrong key; the
other mechanisms carry no credentials, CBS follows. It hands proton the bytes after the exchange,
starting with the AMQP header. A client that skips SASL and sends the AMQP header at once (the
Node service SDK) goes straight to proton.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proton import UNDESCRIBED, Array, Data, Described, symbol, ubyte, ulong

from .framing import AMQP_HEADER, HEADER_SIZE, SASL_HEADER, frame

MECHANISMS = ("MSSBCBS", "PLAIN", "ANONYMOUS")  # never EXTERNAL: proton-style clients would pick it
_SASL_FRAME = 1
_SASL_INIT = 0x41
_MAX_SASL_FRAME = 64 * 1024
OUTCOME_OK = 0
OUTCOME_AUTH = 1  # authentication failed: bad credentials

# PLAIN's user name and password → what they grant; raises PlainRefused to refuse them.
PlainJudge = Callable[[str, str], Any]


class PlainRefused(Exception):
    """Raised by a judge: the credentials grant nothing (the message says why, for the log)."""


@dataclass(frozen=True)
class SaslResult:
    mechanism: str | None  # None: the client skipped SASL
    username: str | None = None  # PLAIN only
    password: str | None = None
    grant: Any = None  # what the judge made of PLAIN's credentials


class SaslError(Exception):
    """The client broke the exchange; `answer` is what to send before closing."""

    def __init__(self, message: str, answer: bytes = b"") -> None:
        super().__init__(message)
        self.answer = answer


def _encode(obj: object) -> bytes:
    data = Data()
    data.put_object(obj)
    return bytes(data.encode())


def mechanisms_frame() -> bytes:
    mechs = Array(UNDESCRIBED, Data.SYMBOL, *(symbol(m) for m in MECHANISMS))
    return frame(_encode(Described(ulong(0x40), [mechs])), _SASL_FRAME)


def outcome_frame(code: int = 0) -> bytes:
    return frame(_encode(Described(ulong(0x44), [ubyte(code)])), _SASL_FRAME)


class SaslFrontEnd:
    """Feed it the client's first bytes until `result` is set; send `output()` each time.
    `remainder` then holds what proton must get (from the AMQP header on)."""

    def __init__(self, judge: PlainJudge | None = None) -> None:
        self._judge = judge
        self._buffer = b""
        self._out = b""
        self._state = "header"  # header → init → amqp-header → done
        self.result: SaslResult | None = None
        self._pending = SaslResult(None)  # the sasl-init read, until the AMQP header follows
        self.remainder = b""

    def output(self) -> bytes:
        out, self._out = self._out, b""
        return out

    def feed(self, data: bytes) -> None:
        """Raises SaslError when the client breaks the exchange."""
        self._buffer += data
        while self.result is None:
            if not self._step():
                return

    def _step(self) -> bool:
        buf = self._buffer
        if self._state in ("header", "amqp-header"):
            if len(buf) < HEADER_SIZE:
                return False
            header = buf[:HEADER_SIZE]
            if self._state == "header" and header == SASL_HEADER:
                self._out += SASL_HEADER + mechanisms_frame()
                self._buffer = buf[HEADER_SIZE:]
                self._state = "init"
                return True
            if header != AMQP_HEADER:
                # The spec's answer to a header it does not speak: its own header, then close.
                raise SaslError(f"unsupported protocol header {header!r}", SASL_HEADER if self._state == "header" else b"")
            if self._state == "header":
                self.result = SaslResult(None)
            self.remainder, self._buffer = buf, b""
            if self._state == "amqp-header":
                self._state = "done"
                self.result = self._pending
            return True
        # state "init": one SASL frame holding sasl-init
        if len(buf) < 4:
            return False
        (size,) = struct.unpack_from(">I", buf)
        if not HEADER_SIZE <= size <= _MAX_SASL_FRAME:
            raise SaslError(f"SASL frame of {size} bytes")
        if len(buf) < size:
            return False
        fr, self._buffer = buf[:size], buf[size:]
        doff = fr[4]
        init = _parse_init(bytes(fr[doff * 4 :]))
        if self._judge is not None and init.username is not None and init.password is not None:
            try:
                init = SaslResult(init.mechanism, init.username, init.password, self._judge(init.username, init.password))
            except PlainRefused as exc:
                raise SaslError(f"SASL PLAIN credentials refused: {exc}", outcome_frame(OUTCOME_AUTH)) from None
        self._pending = init
        self._out += outcome_frame(OUTCOME_OK)
        self._state = "amqp-header"
        return True


def _parse_init(body: bytes) -> SaslResult:
    data = Data()
    try:
        data.decode(body)
        init = data.get_object()
    except Exception as exc:  # proton raises its own DataException and others on bad input
        raise SaslError(f"malformed SASL frame: {exc}") from None
    if not isinstance(init, Described) or init.descriptor != _SASL_INIT or not isinstance(init.value, list) or not init.value:
        raise SaslError("expected sasl-init")
    mechanism = str(init.value[0])
    response = init.value[1] if len(init.value) > 1 else None
    if mechanism == "PLAIN" and isinstance(response, bytes | bytearray | memoryview):
        parts = bytes(response).split(b"\0")
        if len(parts) == 3:  # authzid \0 authcid \0 password
            return SaslResult(mechanism, parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace"))
    return SaslResult(mechanism)
