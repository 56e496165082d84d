"""The clock the services read: timestamps, expiry (SAS tokens, C2D messages, edge TTLs), rates.

Hub, DPS and edge are handed a `Clock` instead of calling `time` and `datetime` themselves, so
that a test can run them on a clock of its own. `SYSTEM_CLOCK` is the real one. Scheduling
(timeouts, `call_later`) stays on the event loop's clock.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time in UTC (timezone-aware)."""
        ...

    def time(self) -> float:
        """The current time in seconds since the epoch, as `now()` (expiry, epoch timestamps)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (rates and intervals)."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK: Clock = SystemClock()
