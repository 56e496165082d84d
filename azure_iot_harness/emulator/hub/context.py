"""`HubContext`: what IoT Hub's service REST routes (and the emulator's own API) get of the hub."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import Policy
from ..clock import Clock
from .c2d import C2DQueues
from .methods import Methods
from .registry import Registry
from .twins import Twins


@dataclass(frozen=True)
class HubContext:
    host: str  # the hub's host name: the audience of service SAS tokens
    policies: tuple[Policy, ...]  # shared access policies that sign service tokens
    registry: Registry
    twins: Twins
    c2d: C2DQueues
    methods: Methods
    clock: Clock
