"""Twins of devices and modules: kept in memory, written through to the store.

Changes are serialised by one lock, committed, and only then visible and announced (a desired
change is pushed to the connected device by the hub, which listens here).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from ..clock import SYSTEM_CLOCK, Clock
from ..protocol import twin as tw
from ..protocol.errors import hub_error
from ..protocol.messages import utc_now_iso
from ..store import Store
from .registry import Key, Registry, etag_matches

_SCHEMA = """
CREATE TABLE IF NOT EXISTS twins (
    device_id TEXT NOT NULL,
    module_id TEXT NOT NULL DEFAULT '',
    doc TEXT NOT NULL,
    PRIMARY KEY (device_id, module_id)
);
"""

DesiredListener = Callable[[Key, dict, int], None]


class Twins:
    def __init__(self, store: Store, registry: Registry, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self._twins: dict[Key, dict] = {}
        self._lock = asyncio.Lock()
        self._desired_listeners: list[DesiredListener] = []
        self._change_listeners: list[Callable[[Key, dict, dict], None]] = []
        store.add_schema(_SCHEMA)
        registry.on_change(self._identity_changed)

    async def load(self) -> None:
        rows = await self.store.submit(lambda c: c.execute("SELECT device_id, module_id, doc FROM twins").fetchall())
        for device_id, module_id, doc in rows:
            self._twins[(device_id, module_id or None)] = json.loads(doc)

    def get(self, key: Key) -> dict:
        """The twin of an existing identity (a new one if it never had any)."""
        return self._twins.get(key) or tw.new_twin()

    def on_desired_change(self, fn: DesiredListener) -> None:
        self._desired_listeners.append(fn)

    def on_change(self, fn: Callable[[Key, dict, dict], None]) -> None:
        """fn(key, changed, twin) after a committed change: `changed` holds the sections as
        patched (`{"reported": patch}`, `{"desired": …, "tags": …}`), `twin` the new document."""
        self._change_listeners.append(fn)

    def _changed(self, key: Key, changed: dict, twin: dict) -> None:
        for fn in list(self._change_listeners):
            fn(key, changed, twin)

    # ---- changes -----------------------------------------------------------------------------

    async def patch_reported(self, key: Key, patch: dict) -> int:
        """Merge a device's reported patch; returns the new reported `$version`. TwinError on bad input."""
        async with self._lock:
            new = tw.apply_patch(self.get(key), "reported", patch, utc_now_iso(self.clock.now()))
            await self._save(key, new)
        self._changed(key, {"reported": patch}, new)
        return new["reportedVersion"]

    async def announce_model(self, key: Key, model_id: str) -> None:
        """Record the model id a device or module announced on connect (`model-id=` in the
        username), shown as the twin's `modelId`. Not a twin change: versions stay as they are."""
        async with self._lock:
            current = self.get(key)
            if current.get("modelId", "") != model_id:
                await self._save(key, {**current, "modelId": model_id})

    async def service_update(self, key: Key, body: dict, *, if_match: str | None, replace: bool) -> dict:
        """REST PATCH (merge) or PUT (replace) of tags and desired properties (see tw.service_update)."""
        if not isinstance(body, dict):
            raise hub_error("ArgumentInvalid", "the twin must be a JSON object")
        async with self._lock:
            current = self.get(key)
            if if_match is not None and not etag_matches(if_match, tw.etag(current)):
                raise hub_error("PreconditionFailed", f"etag {if_match} does not match the twin's {tw.etag(current)}")
            try:
                new, notice = tw.service_update(current, body, utc_now_iso(self.clock.now()), replace=replace)
            except tw.TwinError as exc:
                raise hub_error("ArgumentInvalid", str(exc)) from None
            if new is current:
                return current
            await self._save(key, new)
        props = body.get("properties")
        changed = {"tags": body["tags"]} if "tags" in body else {}
        if isinstance(props, dict) and "desired" in props:
            changed["desired"] = props["desired"]
        self._changed(key, changed, new)
        if notice is not None:
            version = new["desiredVersion"]
            for fn in self._desired_listeners:
                fn(key, tw.desired_notification(notice, version), version)
        return new

    async def _save(self, key: Key, doc: dict) -> None:
        text = json.dumps(doc)
        await self.store.submit(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO twins (device_id, module_id, doc) VALUES (?, ?, ?)", (key[0], key[1] or "", text)
            )
        )
        self._twins[key] = doc

    def _identity_changed(self, key: Key, doc: dict | None) -> None:
        if doc is not None:
            return
        doomed = [k for k in self._twins if k == key or (key[1] is None and k[0] == key[0])]
        for k in doomed:
            del self._twins[k]
        self.store.submit(
            lambda c: c.execute(
                "DELETE FROM twins WHERE device_id = ?" + ("" if key[1] is None else " AND module_id = ?"),
                (key[0],) if key[1] is None else (key[0], key[1]),
            )
        )

    # ---- the service view ----------------------------------------------------------------------

    def view(self, key: Key) -> dict:
        """The twin as `GET /twins/{id}` returns it."""
        identity = self.registry.view(*key)
        assert identity is not None
        twin = self.get(key)
        auth = identity["authentication"]
        out: dict = {"deviceId": key[0]}
        if key[1] is not None:
            out["moduleId"] = key[1]
        out.update(
            {
                "etag": tw.etag(twin),
                "deviceEtag": identity["etag"],
                "status": identity.get("status", "enabled"),
                "statusUpdateTime": identity.get("statusUpdatedTime", "0001-01-01T00:00:00Z"),
                "connectionState": identity["connectionState"],
                "lastActivityTime": identity["lastActivityTime"],
                "cloudToDeviceMessageCount": identity.get("cloudToDeviceMessageCount", 0),
                "authenticationType": auth["type"],
                "x509Thumbprint": dict(auth["x509Thumbprint"]),
                "modelId": twin.get("modelId", ""),
                "version": twin["version"],
                "tags": twin["tags"],
                "properties": tw.properties_view(twin),
            }
        )
        if key[1] is None:
            out["statusReason"] = identity.get("statusReason")
            out["capabilities"] = dict(identity.get("capabilities") or {"iotEdge": False})
            if identity.get("deviceScope"):
                out["deviceScope"] = identity["deviceScope"]
                out["parentScopes"] = list(identity.get("parentScopes") or [])
        return out
