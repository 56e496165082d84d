"""`DpsContext`: what DPS's REST routes (device API and service API) get."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import Scope

from .dps import Dps


@dataclass(frozen=True)
class DpsContext:
    dps: Dps
    # The DER certificates the TLS client of a request (found by its ASGI scope) presented, leaf
    # first, or none: the device REST API attests X.509 devices by them.
    client_chain: Callable[[Scope], tuple[bytes, ...]]
