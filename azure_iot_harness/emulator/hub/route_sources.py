"""Message routing sources besides device telemetry, sent to the built-in endpoint as a hub's
routes send them: twin change events, device lifecycle events, device connection state events.

Each is an event in the durable telemetry log (so the Event Hubs-compatible endpoint, the
emulator's telemetry API and `monitor-events` show it) with the application and system
properties IoT Hub sets: `hubName`, `deviceId` (`moduleId`), `opType`, `operationTimestamp`,
`iothub-message-schema`, and `iothub-message-source` = `twinChangeEvents`,
`deviceLifecycleEvents` or `deviceConnectionStateEvents`. Each source is switched on by its
own setting, as a route for that source switches it on in IoT Hub (none by default).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from ..clock import Clock
from ..protocol.messages import Telemetry, utc_now_iso
from ..store import Store
from .registry import Key, Registry
from .twins import Twins

log = logging.getLogger("azure_iot_harness.hub")


@dataclass(frozen=True)
class Sources:
    twin_changes: bool = False
    lifecycle: bool = False
    connection_state: bool = False


class RouteSources:
    def __init__(self, sources: Sources, *, hub_name: str, store: Store, registry: Registry, twins: Twins, clock: Clock) -> None:
        self.sources = sources
        self.hub_name = hub_name
        self.store = store
        self.registry = registry
        self.clock = clock
        self._known: set[Key] = set()
        self._sequence = 0
        if sources.twin_changes:
            twins.on_change(self._twin_changed)
        if sources.lifecycle:
            registry.on_change(self._identity_changed)
        if sources.connection_state:
            registry.on_connection(self._connection_changed)

    def start(self) -> None:
        """Identities that exist now are not created later (call after the registry loaded)."""
        docs = [*self.registry.devices(), *self.registry.all_modules()]
        self._known = {(d["deviceId"], d.get("moduleId") or None) for d in docs}

    def _emit(self, key: Key, source: str, schema: str, op: str, body: dict) -> None:
        now = utc_now_iso(self.clock.now())
        props: dict[str, str | None] = {
            "hubName": self.hub_name,
            "deviceId": key[0],
            "operationTimestamp": now,
            "iothub-message-schema": schema,
            "opType": op,
        }
        if key[1]:
            props["moduleId"] = key[1]
        system = {
            "content-type": "application/json",
            "content-encoding": "utf-8",
            "iothub-connection-device-id": key[0],
            "iothub-enqueuedtime": now,
            "iothub-message-source": source,
        }
        if key[1]:
            system["iothub-connection-module-id"] = key[1]
        fut = self.store.append_telemetry(Telemetry(key[0], key[1], json.dumps(body).encode(), props, system, now))

        def stored(f: object) -> None:
            exc = fut.exception()
            if exc is not None:
                log.error("%s event of %s not stored: %s", source, key[0], exc)

        fut.add_done_callback(stored)

    def _twin_changed(self, key: Key, changed: dict, twin: dict) -> None:
        properties = {}
        for section in ("desired", "reported"):
            if section in changed:
                properties[section] = {**(changed[section] or {}), "$version": twin.get(f"{section}Version", 1)}
        body: dict = {"version": twin.get("version", 1)}
        if "tags" in changed:
            body["tags"] = changed["tags"]
        if properties:
            body["properties"] = properties
        self._emit(key, "twinChangeEvents", "twinChangeNotification", "updateTwin", body)

    def _identity_changed(self, key: Key, doc: dict | None) -> None:
        if doc is None:
            if key in self._known:
                self._known.discard(key)
                self._emit(key, "deviceLifecycleEvents", "deviceLifecycleNotification", "deleteDeviceIdentity", {"deviceId": key[0]})
            return
        if key in self._known:
            return
        self._known.add(key)
        op = "createModuleIdentity" if key[1] else "createDeviceIdentity"
        self._emit(key, "deviceLifecycleEvents", "deviceLifecycleNotification", op, {"deviceId": key[0], **({"moduleId": key[1]} if key[1] else {})})

    def _connection_changed(self, key: Key, connected: bool) -> None:
        self._sequence += 1
        body = {"sequenceNumber": f"{int(self.clock.time() * 1000):020d}{self._sequence:016d}"}
        op = "deviceConnected" if connected else "deviceDisconnected"
        self._emit(key, "deviceConnectionStateEvents", "deviceConnectionStateNotification", op, body)
