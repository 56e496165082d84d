"""`DpsContext`: what DPS's REST routes (device API and service API) get."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .dps import Dps


@dataclass(frozen=True)
class DpsContext:
    dps: Dps
    # The DER certificate the TLS client of a request (by its ASGI scope) presented, or None:
    # the device REST API attests X.509 devices by it.
    client_certificate: Callable[[dict[str, Any]], bytes | None]
