"""What a check sees: the emulator (`Lab`), the device under test, the run's settings, and the
packet trace as it grows, kept whole here (the emulator keeps only a ring per connection)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .device import DeviceUnderTest
from .lab import Lab
from .model import CheckError, Event, Evidence

T = TypeVar("T")
DEVICE_LISTENERS = ("hub", "dps", "websocket", "edge")


@dataclass
class Settings:
    """What the run knows of the device beyond its identity (flags or a profile file)."""

    methods: list[str] = field(default_factory=list)  # direct methods the device answers (--method)
    unsupported: set[str] = field(default_factory=set)  # features the device declares it lacks (--without)
    provisioning: str = "none"  # dps | none
    auth: str = "sas"  # sas | x509
    telemetry_interval: float = 5.0  # what the device is told (AZURE_IOT_CERTIFY_TELEMETRY_INTERVAL)
    duration: float = 0.0  # the long run's length (soak profile)
    gateway: bool = False  # the edge profile: the device connects through the edge gateway
    module_id: str | None = None  # the device under test is this module of the edge device (--module-id)


class Context:
    def __init__(self, lab: Lab, device: DeviceUnderTest, settings: Settings, log: Callable[[str], None]) -> None:
        self.lab = lab
        self.device = device
        self.settings = settings
        self.log = log
        self.all: list[Event] = []
        self._last_seq: int | None = None
        self.deadline = time.monotonic() + 30.0
        self.timeout = 30.0
        self._faults: list[str] = []
        self.foreign: set[int] = set()  # connections the harness opened itself (as a duplicate device)
        # The hub's host names the device may use: more once DPS has assigned it to "another hub".
        self.hub_hosts: set[str] = {lab.hub_host.lower()}

    @property
    def device_id(self) -> str:
        return self.device.device_id

    @property
    def module_id(self) -> str | None:
        return self.settings.module_id

    @property
    def client_id(self) -> str:
        """What the device's CONNECT must say: `{device}` or `{device}/{module}`."""
        return f"{self.device_id}/{self.module_id}" if self.module_id else self.device_id

    @property
    def listener(self) -> str:
        """Where the device connects: the hub, or the edge gateway in the edge profile."""
        return "edge" if self.settings.gateway else "hub"

    # ---- the trace ---------------------------------------------------------------------------

    def refresh(self) -> list[Event]:
        """Fetch what the trace gained since the last call; the new events."""
        new = self.lab.trace(self._last_seq)
        if new:
            self.all.extend(new)
            self._last_seq = new[-1].seq
        return new

    def mark(self) -> int:
        """The sequence number of the latest event: `since(mark)` is what came after."""
        self.refresh()
        return self._last_seq if self._last_seq is not None else 0

    def since(self, seq: int) -> list[Event]:
        return [e for e in self.all if e.seq > seq]

    def device_events(self, since: int = -1) -> list[Event]:
        """Events of the device's connections: those that name it, and every event of a
        connection that does (its TLS handshake precedes the CONNECT); device-less connections
        on the device listeners count too (the run's emulator serves only the device under test).
        Through the gateway the hub's connections are the edge's upstream links, not the device's."""
        conns = self.device_connections()
        out = []
        for e in self.since(since):
            if self.settings.gateway and (e.listener or "hub") == "hub":
                continue
            if e.device_id == self.device_id or (e.conn is not None and e.conn in conns):
                out.append(e)
            elif e.device_id is None and e.listener in DEVICE_LISTENERS and e.conn not in self.foreign:
                out.append(e)
        return out

    def device_connections(self) -> set[int]:
        return {e.conn for e in self.all if e.conn is not None and e.device_id == self.device_id}

    def wait(self, predicate: Callable[[], T | None], timeout: float | None = None, interval: float = 0.1) -> T | None:
        """Poll the trace until `predicate()` (which reads this context) gives something truthy;
        None when the check's deadline (or `timeout`) passes first."""
        end = self.deadline if timeout is None else min(self.deadline, time.monotonic() + timeout)
        while True:
            self.refresh()
            value = predicate()
            if value:
                return value
            if time.monotonic() >= end:
                return None
            time.sleep(interval)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    # ---- connections -------------------------------------------------------------------------

    def connects(self, since: int = -1, listener: str | None = None) -> list[Event]:
        """The device's CONNECT packets after `since` on one listener (default: where it connects)."""
        where = listener or self.listener
        return [e for e in self.device_events(since) if e.is_in("CONNECT") and (e.listener or "hub") == where]

    def accepted(self, since: int = -1, listener: str | None = None) -> list[Event]:
        """CONNACK 0 sent to the device after `since`."""
        where = listener or self.listener
        return [
            e for e in self.device_events(since)
            if e.is_out("CONNACK") and e.get("return_code", 0) == 0 and (e.listener or "hub") == where
        ]

    def closed(self, conn: int | None) -> Event | None:
        return next((e for e in self.all if e.conn == conn and e.type == "CLOSE"), None)

    def online(self, since: int = -1) -> Event | None:
        """The CONNACK 0 of the device's live connection (accepted after `since`, not closed)."""
        for ack in reversed(self.accepted(since)):
            if self.closed(ack.conn) is None:
                return ack
        return None

    def wait_online(self, since: int = -1, timeout: float | None = None) -> Event | None:
        return self.wait(lambda: self.online(since), timeout)

    def require_online(self, timeout: float | None = None) -> Event:
        ack = self.wait_online(timeout=timeout)
        if ack is None:
            from .model import DeviceFailure

            raise DeviceFailure(f"the device is not connected (no accepted connection within {self.timeout:g} s)",
                                Evidence(self.device_events()[-10:]))
        return ack

    def connection_events(self, conn: int | None) -> list[Event]:
        return [e for e in self.all if e.conn == conn]

    # ---- faults --------------------------------------------------------------------------------

    def fault(self, kind: str, **kw: Any) -> dict[str, Any]:
        """Add a fault for this check; removed when the check ends."""
        doc = self.lab.add_fault(kind, **kw)
        self._faults.append(str(doc.get("id")))
        return doc

    def remove_fault(self, doc: dict[str, Any]) -> None:
        self.lab.remove_fault(str(doc.get("id")))

    def end_check(self) -> None:
        """After every check: its faults are gone."""
        self._faults.clear()
        try:
            self.lab.clear_faults()
        except CheckError:
            pass

    def begin_check(self, timeout: float) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
