"""The event loop an emulator runs on when it owns its loop: uvloop when installed, else asyncio's.

Only where the emulator makes the loop itself — `serve`, and `EmulatorThread` (the pytest
plugin's emulator) on its own thread — does it choose one; it never sets the event-loop policy,
so the loop of the process that loaded it stays that process's choice. An `Emulator` started in
a running loop (`async with Emulator(...)`) runs on that loop, whatever it is.

uvloop (libuv) spends less CPU per socket event than asyncio's selector loop: measured with
instruction counts per telemetry message and per TLS connect (README, Performance).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..config import EVENT_LOOPS
from ..errors import ConfigError


def loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes a new event loop for the `event_loop` setting: "auto" (uvloop when it is
    installed), "uvloop" (ConfigError when it is not) or "asyncio"."""
    if choice not in EVENT_LOOPS:
        raise ConfigError(f"event_loop must be one of {', '.join(EVENT_LOOPS)}, not {choice!r}")
    if choice == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("event_loop is 'uvloop' but uvloop is not installed (pip install uvloop)") from None
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """"uvloop" or "asyncio", for the log line that says which one runs."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
