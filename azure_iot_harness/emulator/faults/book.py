"""`FaultBook`: the faults asked for (HTTP, Python, CLI, Azure's fault properties), and the
lookups the session layers and services make at each point.

Thread-safe for adding and clearing (the pytest fixtures call it from the test's thread);
what a fault does runs on the emulator's event loop. `armed` is the one attribute the packet
path reads: False whenever no fault waits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ...errors import FaultError
from ..trace import ConnTrace
from . import kinds
from .rules import Fault, is_live, pick, targets

log = logging.getLogger("azure_iot_harness.faults")

Action = Callable[[Fault], "Awaitable[None] | None"]
# Told of each fault kept in the book when it is added ("added"; raising FaultError refuses it)
# and when it leaves ("removed": cleared, used up, expired).
Watcher = Callable[[str, Fault], None]


class FaultTarget(Protocol):
    """A live connection, as the book sees it (MqttConnection)."""

    device_id: str | None
    module_id: str | None
    trace_record: ConnTrace | None

    def fault_drop(self, how: str, reason: str) -> None: ...


class FaultBook:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._targets: set[FaultTarget] = set()
        self._actions: dict[str, Action] = {}
        self._watchers: list[Watcher] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.armed = False
        self.azure_properties = True  # honour AzIoTHub_FaultOperationType message properties
        self.applied: dict[str, concurrent.futures.Future[None]] = {}  # faults that act when added

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the emulator runs on, where faults act."""
        self._loop = loop

    def on_added(self, kind: str, action: Action) -> None:
        """What a kind does when a fault of it is added: the whole act for kinds that act at once
        (hub-suspend: stop the MQTT listener), a preparation for others (dps-assign-hub: listen
        under the other host name)."""
        self._actions[kind] = action

    def watch(self, watcher: Watcher) -> None:
        """Be told when faults are kept and when they leave (the TLS adapter's dedicated ports)."""
        self._watchers.append(watcher)

    def unwatch(self, watcher: Watcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)

    def _tell(self, event: str, faults: list[Fault]) -> None:
        for fault in faults:
            for watcher in list(self._watchers):
                if event == "added":
                    watcher(event, fault)  # a FaultError refuses the fault
                    continue
                try:
                    watcher(event, fault)
                except Exception:
                    log.exception("fault %s: error in a watcher", fault.id)

    # ---- the API --------------------------------------------------------------------------

    def add(
        self,
        kind: str,
        *,
        device_id: str | None = None,
        module_id: str | None = None,
        count: int | None = None,
        duration: float | None = None,
        source: str = "api",
        **params: Any,
    ) -> Fault:
        """A new fault. Kinds that act at once (drop now, expire-token, hub-suspend…) start
        acting before this returns; `wait_applied(fault)` waits until they are done."""
        spec = kinds.get(kind)
        checked = kinds.check_params(spec, params)
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise FaultError(f"count must be a positive integer, not {count!r}")
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration <= 0):
            raise FaultError(f"duration must be a positive number of seconds, not {duration!r}")
        if module_id is not None and device_id is None:
            raise FaultError("a fault for a module needs its device id too")
        if count is None and duration is None:
            count = 1
        fault = Fault(
            id=f"f{next(self._ids)}",
            kind=kind,
            point=spec.point_for(checked),
            device_id=device_id,
            module_id=module_id,
            count=count,
            duration=float(duration) if duration is not None else None,
            params=checked,
            created=self._clock(),
            source=source,
        )
        if fault.point == kinds.NOW:
            self._act_now(fault)
        else:
            with self._lock:
                self._faults.append(fault)
                self.armed = True
            try:
                self._tell("added", [fault])
            except FaultError:
                self.remove(fault.id)
                raise
            if kind in self._actions:  # what must be ready before it fires (dps-assign-hub's host)
                self._act_now(fault)
        log.info("fault %s added: %s", fault.id, _describe(fault))
        return fault

    def list(self) -> list[Fault]:
        """The faults still waiting to fire."""
        now = self._clock()
        with self._lock:
            gone = [f for f in self._faults if not is_live(f, now)]
            self._faults = [f for f in self._faults if is_live(f, now)]
            self.armed = bool(self._faults)
            kept = list(self._faults)
        self._tell("removed", gone)
        return kept

    def get(self, fault_id: str) -> Fault | None:
        return next((f for f in self.list() if f.id == fault_id), None)

    def remove(self, fault_id: str) -> bool:
        with self._lock:
            gone = [f for f in self._faults if f.id == fault_id]
            self._faults = [f for f in self._faults if f.id != fault_id]
            self.armed = bool(self._faults)
        self._tell("removed", gone)
        return bool(gone)

    def clear(self) -> None:
        with self._lock:
            gone, self._faults = self._faults, []
            self.armed = False
        self._tell("removed", gone)

    async def wait_applied(self, fault: Fault) -> None:
        """For kinds that act when added: wait until the action is done."""
        fut = self.applied.get(fault.id)
        if fut is not None:
            await asyncio.wrap_future(fut)

    # ---- the lookups ----------------------------------------------------------------------

    def take(self, point: str, device_id: str | None, module_id: str | None, rec: ConnTrace | None = None) -> Fault | None:
        """The fault that fires now at `point` for this identity, counted as fired (and a FAULT
        event on the connection's trace), or None."""
        now = self._clock()
        with self._lock:
            fault = pick(self._faults, point, device_id, module_id, now)
            if fault is None:
                if self._faults and not any(is_live(f, now) for f in self._faults):
                    self._faults, self.armed = [], False
                return None
            fault.fired += 1
            fault.last_fired = now
            used_up = not is_live(fault, now)
            if used_up:
                self._faults.remove(fault)
                self.armed = bool(self._faults)
        if used_up:
            self._tell("removed", [fault])
        log.info("fault %s fires for %s: %s", fault.id, _who(device_id, module_id), _describe(fault))
        if rec is not None:
            record_fault(rec, fault)
        return fault

    # ---- live connections -----------------------------------------------------------------

    def attach(self, target: FaultTarget) -> None:
        self._targets.add(target)

    def detach(self, target: FaultTarget) -> None:
        self._targets.discard(target)

    def _act_now(self, fault: Fault) -> None:
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.applied[fault.id] = done
        while len(self.applied) > 100:  # only the recent ones are waited for
            self.applied.pop(next(iter(self.applied)))

        def run() -> None:
            try:
                result = self._apply(fault)
            except Exception as exc:
                log.exception("fault %s failed", fault.id)
                done.set_exception(exc)
                return
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                task.add_done_callback(lambda t: _settle(done, t))
            else:
                done.set_result(None)

        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            run()
        else:
            loop.call_soon_threadsafe(run)

    def _apply(self, fault: Fault) -> Awaitable[None] | None:
        if fault.kind in ("drop", "expire-token"):
            hit = [t for t in list(self._targets) if targets(fault, t.device_id, t.module_id)]
            fault.fired = len(hit)
            for target in hit:
                if target.trace_record is not None:
                    record_fault(target.trace_record, fault)
                if fault.kind == "drop":
                    target.fault_drop(fault.params["how"], f"fault {fault.id}: drop ({fault.params['how']})")
                else:
                    target.fault_drop("close", "SAS token expired")
            return None
        action = self._actions.get(fault.kind)
        if action is None:
            raise FaultError(f"fault {fault.kind} cannot act in this emulator (no edge?)")
        if fault.point == kinds.NOW:
            fault.fired = 1
        return action(fault)


def record_fault(rec: ConnTrace, fault: Fault) -> None:
    rec.event(
        "FAULT",
        f"{fault.kind} ({fault.id})",
        {"id": fault.id, "kind": fault.kind, "params": fault.params, "source": fault.source},
    )


def _settle(done: concurrent.futures.Future[None], task: asyncio.Future) -> None:
    if task.cancelled():
        done.cancel()
    elif (exc := task.exception()) is not None:
        done.set_exception(exc)
    else:
        done.set_result(None)


def _who(device_id: str | None, module_id: str | None) -> str:
    return f"{device_id}/{module_id}" if module_id else str(device_id)


def _describe(fault: Fault) -> str:
    scope = "every device" if fault.device_id is None else _who(fault.device_id, fault.module_id)
    limits = []
    if fault.count is not None:
        limits.append(f"{fault.count} time(s)")
    if fault.duration is not None:
        limits.append(f"for {fault.duration:g} s")
    params = ", ".join(f"{k}={v}" for k, v in fault.params.items())
    return f"{fault.kind}{f' ({params})' if params else ''} for {scope}, {' '.join(limits) or 'now'}"
