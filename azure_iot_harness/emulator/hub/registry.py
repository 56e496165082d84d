"""The identity registry: devices and modules, their keys and certificates, and their state.

Identities live in memory (every CONNECT reads them) and are written through to the store.
Documents have the shape of IoT Hub's REST API; the runtime fields (connection state, last
activity) are kept here, not in the store, so a restarted emulator never claims a device is
connected.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime as dt
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ...config import (
    WELL_KNOWN_CA_DEVICE,
    WELL_KNOWN_EDGE_DEVICE,
    WELL_KNOWN_EDGE_DEVICE_KEYS,
    WELL_KNOWN_LEAF_DEVICE,
    WELL_KNOWN_LEAF_DEVICE_KEYS,
    WELL_KNOWN_MODULE,
    WELL_KNOWN_MODULE_KEYS,
    WELL_KNOWN_SAS_DEVICE,
    WELL_KNOWN_SAS_DEVICE_KEYS,
)
from ..clock import SYSTEM_CLOCK, Clock
from ..protocol.errors import hub_error
from ..protocol.messages import utc_now_iso
from ..protocol.sas import key_problem, new_key
from ..store import Store

# IoT Hub: up to 128 characters, ASCII letters, digits and - . % _ # * ? ! ( ) , : = @ $ '
_ID = re.compile(r"[A-Za-z0-9\-.%_#*?!(),:=@$']{1,128}")
_THUMBPRINT = re.compile(r"[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64}")
NEVER = "0001-01-01T00:00:00Z"
AUTH_TYPES = ("sas", "selfSigned", "certificateAuthority", "none")

Key = tuple[str, str | None]
T = TypeVar("T")


@dataclass
class Runtime:
    connected: bool = False
    # Epoch seconds (0: never), formatted only when read: touch() runs for every message.
    connection_state_updated: float = 0.0
    last_activity: float = 0.0


def check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise hub_error(
            "ArgumentInvalid",
            f"{what} {value!r} is invalid: up to 128 ASCII letters, digits or - . % _ # * ? ! ( ) , : = @ $ '",
        )
    return value


def _generation_id(now: float) -> str:
    # .NET ticks, the shape IoT Hub uses.
    return str(int(now * 10_000_000) + 621_355_968_000_000_000)


def _etag(version: int) -> str:
    return base64.b64encode(str(version).encode()).decode()


def etag_matches(if_match: str | None, etag: str | None) -> bool:
    """If-Match with or without quotes; `*` matches anything that exists."""
    if if_match is None:
        return True
    value = if_match.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    return value == "*" or value == etag


class Registry:
    def __init__(self, store: Store, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self.clock = clock
        self._docs: dict[Key, dict] = {}
        self._runtime: dict[Key, Runtime] = {}
        self._listeners: list[Callable[[Key, dict | None], None]] = []
        self._connection_listeners: list[Callable[[Key, bool], None]] = []
        # Pending cloud-to-device messages of a device, for `cloudToDeviceMessageCount`.
        self.pending_c2d: Callable[[str], int] = lambda device_id: 0
        # Writes check a precondition, then await the store: without a lock two concurrent
        # creates of one id would both pass the check and the second would silently win. One
        # lock per device id (its modules included), so writes to different devices share a
        # group commit instead of waiting for each other's (a provisioning storm's bottleneck).
        self._write_locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def load(self) -> None:
        for doc in await self.store.load_identities():
            self._docs[(doc["deviceId"], doc.get("moduleId"))] = doc

    async def seed_well_known(self, *, edge: bool = False) -> None:
        """Create the published development identities when they are missing (the IoT Edge
        ones only for an emulator with an edge)."""
        if (WELL_KNOWN_SAS_DEVICE, None) not in self._docs:
            await self.put_device(
                {
                    "deviceId": WELL_KNOWN_SAS_DEVICE,
                    "authentication": {
                        "type": "sas",
                        "symmetricKey": dict(zip(("primaryKey", "secondaryKey"), WELL_KNOWN_SAS_DEVICE_KEYS)),
                    },
                },
                if_match=None,
            )
        if (WELL_KNOWN_SAS_DEVICE, WELL_KNOWN_MODULE) not in self._docs:
            await self.put_module(
                WELL_KNOWN_SAS_DEVICE,
                {
                    "moduleId": WELL_KNOWN_MODULE,
                    "authentication": {
                        "type": "sas",
                        "symmetricKey": dict(zip(("primaryKey", "secondaryKey"), WELL_KNOWN_MODULE_KEYS)),
                    },
                },
                if_match=None,
            )
        if (WELL_KNOWN_CA_DEVICE, None) not in self._docs:
            await self.put_device(
                {"deviceId": WELL_KNOWN_CA_DEVICE, "authentication": {"type": "certificateAuthority"}},
                if_match=None,
            )
        if edge:
            await self._seed_edge()

    async def _seed_edge(self) -> None:
        """The well-known IoT Edge device and a leaf device in its scope (parent/child)."""
        if (WELL_KNOWN_EDGE_DEVICE, None) not in self._docs:
            keys = dict(zip(("primaryKey", "secondaryKey"), WELL_KNOWN_EDGE_DEVICE_KEYS))
            body = {"authentication": {"type": "sas", "symmetricKey": keys}, "capabilities": {"iotEdge": True}}
            await self.put_device({"deviceId": WELL_KNOWN_EDGE_DEVICE, **body}, if_match=None)
        scope = self._docs[(WELL_KNOWN_EDGE_DEVICE, None)].get("deviceScope")
        if (WELL_KNOWN_LEAF_DEVICE, None) not in self._docs and scope:
            keys = dict(zip(("primaryKey", "secondaryKey"), WELL_KNOWN_LEAF_DEVICE_KEYS))
            await self.put_device(
                {
                    "deviceId": WELL_KNOWN_LEAF_DEVICE,
                    "authentication": {"type": "sas", "symmetricKey": keys},
                    "deviceScope": scope,
                    "parentScopes": [scope],
                },
                if_match=None,
            )

    # ---- reads ---------------------------------------------------------------------------

    def get(self, device_id: str, module_id: str | None = None) -> dict | None:
        """The stored document (not a copy: callers must not change it)."""
        return self._docs.get((device_id, module_id))

    def view(self, device_id: str, module_id: str | None = None) -> dict | None:
        """The document as the REST API shows it, runtime fields included."""
        doc = self._docs.get((device_id, module_id))
        if doc is None:
            return None
        out = copy.deepcopy(doc)
        rt = self._runtime.get((device_id, module_id), Runtime())
        out["connectionState"] = "Connected" if rt.connected else "Disconnected"
        out["connectionStateUpdatedTime"] = _iso(rt.connection_state_updated)
        out["lastActivityTime"] = _iso(rt.last_activity)
        out["cloudToDeviceMessageCount"] = self.pending_c2d(device_id) if module_id is None else 0
        return out

    def devices(self) -> list[dict]:
        return [self.view(d, None) for (d, m) in self._ordered_keys() if m is None]  # type: ignore[misc]  # the identity exists: its key was just read or written

    def modules(self, device_id: str) -> list[dict]:
        return [self.view(d, m) for (d, m) in self._ordered_keys() if d == device_id and m is not None]  # type: ignore[misc]  # the identity exists: its key was just read or written

    def all_modules(self) -> list[dict]:
        """Every module of every device, ordered by device id then module id."""
        return [self.view(d, m) for (d, m) in self._ordered_keys() if m is not None]  # type: ignore[misc]  # the identity exists: its key was just read or written

    def _ordered_keys(self) -> list[Key]:
        # A device's key has module None, which does not compare with str: sort it as "".
        return sorted(self._docs, key=lambda k: (k[0], k[1] or ""))

    def is_connected(self, device_id: str, module_id: str | None = None) -> bool:
        rt = self._runtime.get((device_id, module_id))
        return rt is not None and rt.connected

    # ---- writes --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _writing(self, device_id: object) -> AsyncIterator[None]:
        """Hold the write lock of one device id; it is dropped when nobody holds or waits for it."""
        key = str(device_id)
        lock, users = self._write_locks.get(key) or (asyncio.Lock(), 0)
        self._write_locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._write_locks[key]
            if users == 1:
                del self._write_locks[key]
            else:
                self._write_locks[key] = (lock, users - 1)

    async def put_device(
        self, body: dict, *, if_match: str | None, device_id: str | None = None, also: Callable[[sqlite3.Connection], None] | None = None
    ) -> dict:
        """`also`: a store write that commits together with the device's (both or neither)."""
        async with self._writing(device_id or body.get("deviceId")):
            return await self._put_device(body, if_match=if_match, device_id=device_id, also=also)

    async def _put_device(
        self, body: dict, *, if_match: str | None, device_id: str | None, also: Callable[[sqlite3.Connection], None] | None = None
    ) -> dict:
        device_id = check_id(device_id or body.get("deviceId"), "device id")
        if body.get("deviceId") not in (None, device_id):
            raise hub_error("ArgumentInvalid", f"deviceId in the body ({body.get('deviceId')!r}) is not {device_id!r}")
        existing = self._docs.get((device_id, None))
        self._check_precondition(existing, if_match, "DeviceAlreadyExists", "DeviceNotFound", f"device {device_id}")
        capabilities = _optional(body, "capabilities", dict) or {}
        is_edge = bool(_optional(capabilities, "iotEdge", bool))
        generation_id = existing["generationId"] if existing else _generation_id(self.clock.time())
        scope, parents = device_scopes(
            device_id, generation_id, is_edge, _optional(body, "deviceScope", str), _string_list(body, "parentScopes"), existing
        )
        doc = {
            "deviceId": device_id,
            "generationId": generation_id,
            "etag": _etag(int(base64.b64decode(existing["etag"])) + 1 if existing else 1),
            "status": _status(body.get("status", "enabled")),
            "statusReason": _optional(body, "statusReason", str),
            "statusUpdatedTime": NEVER,
            "cloudToDeviceMessageCount": existing.get("cloudToDeviceMessageCount", 0) if existing else 0,
            "authentication": _authentication(body.get("authentication")),
            "capabilities": {"iotEdge": is_edge},
            "deviceScope": scope,
            "parentScopes": parents,
        }
        if existing is None or existing["status"] != doc["status"]:
            doc["statusUpdatedTime"] = utc_now_iso(self.clock.now())
        else:
            doc["statusUpdatedTime"] = existing["statusUpdatedTime"]
        await self._write((device_id, None), doc, also)
        return self.view(device_id)  # type: ignore[return-value]  # the identity exists: its key was just read or written

    async def put_module(self, device_id: str, body: dict, *, if_match: str | None, module_id: str | None = None) -> dict:
        async with self._writing(device_id):
            return await self._put_module(device_id, body, if_match=if_match, module_id=module_id)

    async def _put_module(self, device_id: str, body: dict, *, if_match: str | None, module_id: str | None) -> dict:
        if (device_id, None) not in self._docs:
            raise hub_error("DeviceNotFound", f"device {device_id} not found")
        module_id = check_id(module_id or body.get("moduleId"), "module id")
        if body.get("moduleId") not in (None, module_id):
            raise hub_error("ArgumentInvalid", f"moduleId in the body ({body.get('moduleId')!r}) is not {module_id!r}")
        existing = self._docs.get((device_id, module_id))
        self._check_precondition(
            existing, if_match, "ModuleAlreadyExistsOnDevice", "ModuleNotFound", f"module {device_id}/{module_id}"
        )
        doc = {
            "moduleId": module_id,
            "deviceId": device_id,
            "managedBy": _optional(body, "managedBy", str),
            "generationId": existing["generationId"] if existing else _generation_id(self.clock.time()),
            "etag": _etag(int(base64.b64decode(existing["etag"])) + 1 if existing else 1),
            "cloudToDeviceMessageCount": 0,
            "authentication": _authentication(body.get("authentication")),
        }
        await self._write((device_id, module_id), doc)
        return self.view(device_id, module_id)  # type: ignore[return-value]  # the identity exists: its key was just read or written

    async def delete(self, device_id: str, module_id: str | None = None, *, if_match: str | None = None) -> None:
        async with self._writing(device_id):
            await self._delete(device_id, module_id, if_match=if_match)

    async def _delete(self, device_id: str, module_id: str | None, *, if_match: str | None) -> None:
        existing = self._docs.get((device_id, module_id))
        if existing is None:
            if module_id is None:
                raise hub_error("DeviceNotFound", f"device {device_id} not found")
            raise hub_error("ModuleNotFound", f"module {device_id}/{module_id} not found")
        if not etag_matches(if_match, existing["etag"]):
            raise hub_error("PreconditionFailed", f"etag {if_match} does not match {existing['etag']}")
        doomed = [k for k in self._docs if k == (device_id, module_id) or (module_id is None and k[0] == device_id)]
        await self.store.delete_identity(device_id, module_id)
        for key in doomed:
            del self._docs[key]
            self._runtime.pop(key, None)
            self._notify(key, None)

    def _check_precondition(
        self, existing: dict | None, if_match: str | None, exists_error: str, missing_error: str, what: str
    ) -> None:
        if existing is None:
            if if_match is not None and if_match.strip().strip('"') != "*":
                raise hub_error(missing_error, f"{what} not found")
            return
        if if_match is None:
            raise hub_error(exists_error, f"{what} already exists")
        if not etag_matches(if_match, existing["etag"]):
            raise hub_error("PreconditionFailed", f"etag {if_match} does not match {existing['etag']} for {what}")

    async def _write(self, key: Key, doc: dict, also: Callable[[sqlite3.Connection], None] | None = None) -> None:
        await self.store.put_identity(doc, also=also)
        self._docs[key] = doc
        self._notify(key, doc)

    # ---- runtime state and change notification ------------------------------------------

    def set_connected(self, device_id: str, module_id: str | None, connected: bool) -> None:
        rt = self._runtime.setdefault((device_id, module_id), Runtime())
        rt.connected = connected
        rt.connection_state_updated = rt.last_activity = self.clock.time()
        for fn in list(self._connection_listeners):
            fn((device_id, module_id), connected)

    def on_connection(self, fn: Callable[[Key, bool], None]) -> None:
        """fn(key, connected) when an identity connects or disconnects."""
        self._connection_listeners.append(fn)

    def touch(self, device_id: str, module_id: str | None) -> None:
        rt = self._runtime.get((device_id, module_id))
        if rt is None:
            rt = self._runtime[(device_id, module_id)] = Runtime()
        rt.last_activity = self.clock.time()

    def on_change(self, fn: Callable[[Key, dict | None], None]) -> None:
        """fn(key, doc) after every write; doc is None when the identity was deleted."""
        self._listeners.append(fn)

    def off_change(self, fn: Callable[[Key, dict | None], None]) -> None:
        """Stop calling fn (a listener that goes away before the registry, as a stopped edge)."""
        if fn in self._listeners:
            self._listeners.remove(fn)

    def _notify(self, key: Key, doc: dict | None) -> None:
        for fn in list(self._listeners):
            fn(key, doc)


def _iso(epoch: float) -> str:
    if not epoch:
        return NEVER
    return utc_now_iso(dt.datetime.fromtimestamp(epoch, dt.UTC))


def _status(value: object) -> str:
    if value not in ("enabled", "disabled"):
        raise hub_error("ArgumentInvalid", f"status must be 'enabled' or 'disabled', not {value!r}")
    return value


def device_scopes(
    device_id: str, generation_id: str, is_edge: bool, scope: str | None, parents: list[str], existing: dict | None
) -> tuple[str | None, list[str]]:
    """(deviceScope, parentScopes) of a device as IoT Hub keeps them.

    An IoT Edge device's scope is its own, made by the hub from its id and generation and never
    changed (what the body says is ignored); its parentScopes name the edge device above it. A
    leaf device is placed under an edge device by setting its deviceScope to the edge device's,
    and its parentScopes follow from that.
    """
    if is_edge:
        own = (existing or {}).get("deviceScope") if (existing or {}).get("capabilities", {}).get("iotEdge") else None
        return own or f"ms-azure-iot-edge://{device_id}-{generation_id}", parents
    scope = scope or None  # "" is how clients take a leaf out of its parent's scope
    return scope, [scope] if scope else []


def _optional(body: dict, name: str, kind: type[T]) -> T | None:
    """body[name] when it is absent, null or of type `kind`; otherwise a 400 naming the field."""
    value = body.get(name)
    if value is None or isinstance(value, kind):
        return value
    raise hub_error("ArgumentInvalid", f"{name} must be {_TYPE_NAMES.get(kind, kind.__name__)}, not {value!r}")


_TYPE_NAMES = {str: "a string", bool: "true or false", dict: "a JSON object", list: "a JSON array"}


def _string_list(body: dict, name: str) -> list[str]:
    values = _optional(body, name, list) or []
    if not all(isinstance(v, str) for v in values):
        raise hub_error("ArgumentInvalid", f"{name} must be an array of strings")
    return list(values)


def _authentication(auth: object) -> dict:
    """Validate an authentication mechanism; generate SAS keys the caller left out, as Azure does."""
    if auth is not None and not isinstance(auth, dict):
        raise hub_error("ArgumentInvalid", f"authentication must be a JSON object, not {auth!r}")
    auth = auth or {}
    kind = auth.get("type") or "sas"
    if kind not in AUTH_TYPES:
        raise hub_error("ArgumentInvalid", f"authentication type {kind!r} is not one of {', '.join(AUTH_TYPES)}")
    keys = _optional(auth, "symmetricKey", dict) or {}
    prints = _optional(auth, "x509Thumbprint", dict) or {}
    out: dict[str, Any] = {
        "symmetricKey": {"primaryKey": None, "secondaryKey": None},
        "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
        "type": kind,
    }
    if kind == "sas":
        for name in ("primaryKey", "secondaryKey"):
            key = _optional(keys, name, str) or new_key()
            problem = key_problem(key)
            if problem:
                raise hub_error("ArgumentInvalid", f"{name} {problem}")
            out["symmetricKey"][name] = key
    elif kind == "selfSigned":
        primary = prints.get("primaryThumbprint")
        if not primary:
            raise hub_error("ArgumentInvalid", "a selfSigned device needs x509Thumbprint.primaryThumbprint")
        for name in ("primaryThumbprint", "secondaryThumbprint"):
            value = _optional(prints, name, str)
            if value is not None and not _THUMBPRINT.fullmatch(value.replace(":", "")):
                raise hub_error("ArgumentInvalid", f"{name} must be 40 (SHA-1) or 64 (SHA-256) hex digits")
            out["x509Thumbprint"][name] = value.replace(":", "").upper() if value else None
    return out
