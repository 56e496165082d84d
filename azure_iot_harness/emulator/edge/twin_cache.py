"""The edge's twin cache: per child, the last twin seen from the hub with the child's own
reported patches merged in, and the reported patches the hub has not confirmed yet, in order.

Both live in the store, so a restarted edge still answers a twin GET while the hub is away and
still owes the hub the same patches. `desired_diff` is the patch that takes a child from the
desired properties it knew to the hub's current ones (edgeHub sends it when a link comes back).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ..protocol import twin as tw
from ..store import Store

Key = tuple[str, str | None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS edge_twins (
    device_id TEXT NOT NULL,
    module_id TEXT NOT NULL DEFAULT '',
    doc TEXT NOT NULL,
    PRIMARY KEY (device_id, module_id)
);
"""


def from_device_view(view: dict) -> dict:
    """A twin (protocol.twin's shape) from what a twin GET answers: desired and reported with
    their `$version`s."""
    twin = tw.new_twin()
    for section in ("desired", "reported"):
        value = view.get(section)
        part: dict = value if isinstance(value, dict) else {}
        twin[section] = tw.strip_reserved(part)
        version = part.get("$version")
        if isinstance(version, int) and not isinstance(version, bool):
            twin[f"{section}Version"] = version
    return twin


def desired_diff(old: dict, new: dict) -> dict:
    """A merge patch from `old` to `new`: changed members with their new value, removed ones
    as null, nested objects diffed member by member. Empty when they are equal."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            inner = desired_diff(before, value)
            if inner:
                patch[key] = inner
        elif key not in old or before != value:
            patch[key] = copy.deepcopy(value)
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


class TwinCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._twins: dict[Key, dict | None] = {}  # None: no twin seen from the hub yet
        self._pending: dict[Key, list[dict]] = {}
        store.add_schema(_SCHEMA)

    async def load(self) -> None:
        rows = await self.store.submit(lambda c: c.execute("SELECT device_id, module_id, doc FROM edge_twins").fetchall())
        self._twins.clear()
        self._pending.clear()
        for device_id, module_id, doc in rows:
            data = json.loads(doc)
            key = (device_id, module_id or None)
            self._twins[key] = data["twin"]
            self._pending[key] = data["pending"]

    def twin(self, key: Key) -> dict | None:
        return self._twins.get(key)

    def pending(self, key: Key) -> list[dict]:
        return list(self._pending.get(key, []))

    def keys_with_pending(self) -> list[Key]:
        return [k for k, p in self._pending.items() if p]

    def pending_counts(self) -> dict[str, int]:
        return {(f"{d}/{m}" if m else d): len(p) for (d, m), p in self._pending.items() if p}

    async def from_hub(self, key: Key, twin: dict) -> None:
        """The twin as the hub answered it; patches still owed to the hub stay merged in."""
        merged = twin
        for patch in self._pending.get(key, []):
            try:
                merged = tw.apply_patch(merged, "reported", patch, "")
            except tw.TwinError:
                pass  # the hub will refuse it too
            merged["reportedVersion"] = twin["reportedVersion"]
        await self._save(key, merged)

    async def desired_patch(self, key: Key, patch: dict, version: int | None) -> None:
        """A desired-properties change relayed from the hub."""
        current = self._twins.get(key)
        if current is None:
            return  # nothing cached to keep up to date
        try:
            new = tw.apply_patch(current, "desired", patch, "")
        except tw.TwinError:
            return
        if version is not None:
            new["desiredVersion"] = version
        await self._save(key, new)

    async def reported_patch(self, key: Key, patch: dict) -> None:
        """A child's reported patch, owed to the hub from now on. TwinError when it breaks
        IoT Hub's rules (checked against the cached twin, as the hub would)."""
        current = self._twins.get(key) or tw.new_twin()
        new = tw.apply_patch(current, "reported", patch, "")
        self._pending.setdefault(key, []).append(patch)
        await self._save(key, new)

    async def confirmed(self, key: Key) -> None:
        """The oldest owed patch reached the hub (or was refused by it for good)."""
        pending = self._pending.get(key)
        if pending:
            pending.pop(0)
            await self._save(key, self._twins.get(key))

    async def forget(self, key: Key) -> None:
        """The child is gone from the registry: nothing is owed for it any more."""
        self._twins.pop(key, None)
        self._pending.pop(key, None)
        await self.store.submit(
            lambda c: c.execute("DELETE FROM edge_twins WHERE device_id = ? AND module_id = ?", (key[0], key[1] or ""))
        )

    async def _save(self, key: Key, twin: dict | None) -> None:
        self._twins[key] = twin
        text = json.dumps({"twin": twin, "pending": self._pending.get(key, [])})
        await self.store.submit(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO edge_twins (device_id, module_id, doc) VALUES (?, ?, ?)", (key[0], key[1] or "", text)
            )
        )
