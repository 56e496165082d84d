"""Fault injection: the faults a test asks for, and where each one fires.

`kinds` is the registry of fault kinds (other parts add theirs with `kinds.register`), `rules`
the pure matching of faults to a point and an identity, `book.FaultBook` the faults of one
emulator, `azure` Azure's own fault-injection message properties (`AzIoTHub_FaultOperationType`),
(`emulator.faults_api` serves them over HTTP).
"""

from __future__ import annotations

from .book import FaultBook, FaultTarget, record_fault
from .kinds import KINDS, Kind, Param, register
from .rules import Fault

__all__ = ["KINDS", "Fault", "FaultBook", "FaultTarget", "Kind", "Param", "record_fault", "register"]
