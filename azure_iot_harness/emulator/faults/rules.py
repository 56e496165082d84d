"""Which fault fires where: pure functions over `Fault`s, the time given."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Fault:
    """One fault asked for. `count`: how many times it fires (None: until its duration ends or it
    is cleared); `duration`: seconds from its creation (None: until its count is used up or it
    is cleared). A fault given neither fires once."""

    id: str
    kind: str
    point: str
    device_id: str | None = None  # None: every device and module
    module_id: str | None = None  # None: the device itself (or, with no device, everyone)
    count: int | None = None
    duration: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    fired: int = 0
    source: str = "api"  # "api", or "azure-property" for AzIoTHub_FaultOperationType
    last_fired: float | None = None
    listen: tuple[str, int] | None = None  # where a fault with a port of its own is served (TLS faults)

    @property
    def expires(self) -> float | None:
        return None if self.duration is None else self.created + self.duration

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "deviceId": self.device_id,
            "moduleId": self.module_id,
            "count": self.count,
            "durationSeconds": self.duration,
            "params": dict(self.params),
            "created": self.created,
            "expires": self.expires,
            "fired": self.fired,
            "source": self.source,
            **({"host": self.listen[0], "port": self.listen[1]} if self.listen is not None else {}),
        }


def is_live(fault: Fault, now: float) -> bool:
    """Not used up and not past its duration."""
    if fault.count is not None and fault.fired >= fault.count:
        return False
    return fault.duration is None or now < fault.created + fault.duration


def targets(fault: Fault, device_id: str | None, module_id: str | None) -> bool:
    """Whether the fault is scoped to this identity (a device, or a module of one)."""
    if fault.device_id is None:
        return True
    return fault.device_id == device_id and fault.module_id == module_id


def pick(faults: Iterable[Fault], point: str, device_id: str | None, module_id: str | None, now: float) -> Fault | None:
    """The oldest live fault for this point and identity, or None."""
    for fault in faults:
        if fault.point == point and targets(fault, device_id, module_id) and is_live(fault, now):
            return fault
    return None
