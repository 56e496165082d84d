"""Persistent MQTT sessions (clean session 0): subscriptions survive reconnects and restarts.

The Azure SDKs reconnect to renew SAS tokens and never subscribe again, so a session's
subscriptions must outlive its connection. Queued cloud-to-device messages need no copy here:
they wait in the device's C2D queue, and `c2d_after` says from which message on this session
receives them (IoT Hub delivers only what was enqueued after the subscription was made).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..store import Store
from .registry import Key, Registry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    device_id TEXT NOT NULL,
    module_id TEXT NOT NULL DEFAULT '',
    doc TEXT NOT NULL,
    PRIMARY KEY (device_id, module_id)
);
"""


@dataclass
class SessionState:
    subscriptions: dict[str, int] = field(default_factory=dict)  # filter -> granted QoS
    c2d_after: int = 0  # deliver C2D messages with a sequence number above this
    # In memory only: C2D sequence number -> MQTT packet id of its delivery, so a redelivery
    # reuses the packet id, as MQTT wants for a resent PUBLISH.
    inflight: dict[int, int] = field(default_factory=dict)


class SessionStates:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self._states: dict[Key, SessionState] = {}
        store.add_schema(_SCHEMA)
        registry.on_change(self._identity_changed)

    async def load(self) -> None:
        rows = await self.store.submit(lambda c: c.execute("SELECT device_id, module_id, doc FROM sessions").fetchall())
        for device_id, module_id, doc in rows:
            data = json.loads(doc)
            self._states[(device_id, module_id or None)] = SessionState(data["subscriptions"], data["c2d_after"])

    def resume(self, key: Key, clean: bool) -> tuple[SessionState, bool]:
        """The state for a new connection and whether it was kept (CONNACK session-present)."""
        if clean:
            self.discard(key)
            return SessionState(), False
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = SessionState()
            self.save(key, state)
            return state, False
        return state, True

    def save(self, key: Key, state: SessionState) -> None:
        if self._states.get(key) is not state:
            return  # a clean session: nothing is kept
        text = json.dumps({"subscriptions": state.subscriptions, "c2d_after": state.c2d_after})
        self.store.submit(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO sessions (device_id, module_id, doc) VALUES (?, ?, ?)", (key[0], key[1] or "", text)
            )
        )

    def discard(self, key: Key) -> None:
        if self._states.pop(key, None) is not None:
            self.store.submit(
                lambda c: c.execute("DELETE FROM sessions WHERE device_id = ? AND module_id = ?", (key[0], key[1] or ""))
            )

    def _identity_changed(self, key: Key, doc: dict | None) -> None:
        if doc is None:
            for k in [k for k in self._states if k == key or (key[1] is None and k[0] == key[0])]:
                self.discard(k)
