"""How the edge reads the hub's answers to what `$upstream` forwards. Pure.

Over MQTT the hub answers a forwarded message in one of a few ways: it cannot be reached, it
refuses the child's upstream connection with a CONNACK code, it closes the connection on the
PUBLISH (how IoT Hub answers a message it will not take), it does not answer in time, or it
acknowledges. `judge` turns an answer into what the edge does next:

- `RETRY`: transient for everyone (unreachable, no answer, or the hub refuses the edge device's
  own credentials, which every child's connection carries): keep the message, back off, and
  hold every device's messages meanwhile — they would meet the same answer.
- `RETRY_DEVICE`: transient for this device only (CONNACK 3, server unavailable, while the
  device is in order at the edge; or the hub closed the connection on this message, fewer than
  `POISON_AFTER` times in a row): back off this device, the others keep flowing.
- `DROP_DEVICE`: the hub refuses the device (not registered, disabled, not a child of the edge,
  bad credentials): its message is dropped and counted, as edgeHub drops messages of a device
  that is no longer in its scope.
- `DROP_MESSAGE`: the hub closed a connection it had just accepted on this very message
  `POISON_AFTER` times in a row, backing off in between (too large, a property it refuses):
  dropped and counted. Over MQTT a hub that throttles also just closes; the back-off between
  the attempts (several seconds in all) tells a passing throttle from a message it never takes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ...errors import ConnackCode

POISON_AFTER = 5
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 2.0


class Verdict(enum.Enum):
    RETRY = "retry"
    RETRY_DEVICE = "retry device"
    DROP_DEVICE = "drop: refused for the device"
    DROP_MESSAGE = "drop: refused for the message"


class Answer(enum.Enum):
    UNREACHABLE = "unreachable"  # no TCP/TLS/MQTT connection (or closed before CONNACK)
    REFUSED = "refused"  # CONNACK with a non-zero code
    CLOSED = "closed"  # the hub closed an accepted connection before acknowledging the message
    NO_ANSWER = "no answer"  # no PUBACK in time


@dataclass(frozen=True)
class HubAnswer:
    kind: Answer
    detail: str = ""
    code: int | None = None  # the CONNACK code of a refusal

    def __str__(self) -> str:
        code = f" (CONNACK {self.code})" if self.code is not None else ""
        return f"{self.kind.value}{code}{': ' + self.detail if self.detail else ''}"


def judge(answer: HubAnswer, *, edge_problem: str | None, device_problem: str | None, closes_in_a_row: int) -> Verdict:
    """What to do with a message the hub did not acknowledge.

    `edge_problem` / `device_problem`: what the edge's own view of the registry says is wrong
    with the edge device / the sending device (None: nothing); `closes_in_a_row`: how many times,
    counting this one, an accepted connection was closed on this message."""
    if answer.kind in (Answer.UNREACHABLE, Answer.NO_ANSWER):
        return Verdict.RETRY
    if answer.kind is Answer.REFUSED:
        if edge_problem is not None:
            return Verdict.RETRY
        if answer.code == ConnackCode.SERVER_UNAVAILABLE and device_problem is None:
            return Verdict.RETRY_DEVICE
        return Verdict.DROP_DEVICE
    return Verdict.DROP_MESSAGE if closes_in_a_row >= POISON_AFTER else Verdict.RETRY_DEVICE


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (0 = the first): doubling up to a cap."""
    return min(FIRST_BACKOFF * 2 ** min(attempt, 16), MAX_BACKOFF)
