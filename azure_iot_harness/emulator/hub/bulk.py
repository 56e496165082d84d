"""Bulk registry operations: `POST /devices` with up to 100 device entries.

Each entry (IoT Hub's ExportImportDevice: `id`, `importMode`, `eTag`, `status`, `authentication`,
`capabilities`, `deviceScope`, `tags`, `properties`, `twinETag`, …) is created, updated, deleted
or has its twin updated as its import mode says; the answer is IoT Hub's
BulkRegistryOperationResult, with one error per failed device. This is what the Node SDK's
`Registry.addDevices`/`updateDevices`/`removeDevices` and the Python SDK's
`bulk_create_or_update_devices` send.

Import modes, matched in any case (the Node SDK sends `create`, `Update`, `DeleteIfMatchETag`):
`createOrUpdate` (also when absent) creates or overwrites; `create` fails when the device exists;
`update`, `delete` and `updateTwin` fail when it does not; the `…IfMatchETag` forms also need the
device's `eTag` (the twin's `twinETag` for `updateTwinIfMatchETag`) to match. Twin data given with
a create or update is merged into the device's twin.

Each entry is applied on its own, in order: a failing one is reported and the others still take
effect. The whole request is refused only when it is malformed: not an array, empty, more than
100 entries (413 TooManyDevices), an entry without an id or with an unknown import mode, or a
device named twice (DeviceDefinedMultipleTimes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ...errors import ServiceError
from ..protocol.errors import hub_error, not_supported
from .registry import Key, Registry

MAX_DEVICES = 100
MODES = (
    "createOrUpdate", "create", "update", "updateIfMatchETag", "createOrUpdateIfMatchETag",
    "delete", "deleteIfMatchETag", "updateTwin", "updateTwinIfMatchETag",
)  # fmt: skip
_BY_LOWER = {m.lower(): m for m in MODES}
_MUST_EXIST = {"update", "updateIfMatchETag", "delete", "deleteIfMatchETag", "updateTwin", "updateTwinIfMatchETag"}
_IDENTITY_FIELDS = ("status", "statusReason", "authentication", "capabilities", "deviceScope", "parentScopes")


class TwinUpdater(Protocol):
    async def service_update(self, key: Key, body: dict, *, if_match: str | None, replace: bool) -> dict: ...


@dataclass(frozen=True)
class Operation:
    device_id: str
    mode: str  # as spelled in MODES
    entry: dict

    @property
    def etag(self) -> str | None:
        # ExportImportDevice says `eTag`; the Node SDK passes its Device objects' `etag` through.
        value = self.entry.get("eTag") or self.entry.get("etag")
        return value if isinstance(value, str) else None

    @property
    def twin(self) -> dict | None:
        """The twin data of the entry as a service twin patch, or None."""
        twin = {name: self.entry[name] for name in ("tags", "properties") if self.entry.get(name) is not None}
        return twin or None

    def identity(self) -> dict:
        """The entry as the body of a device PUT."""
        body = {name: self.entry[name] for name in _IDENTITY_FIELDS if name in self.entry}
        return {"deviceId": self.device_id, **body}


def parse(body: object) -> list[Operation]:
    """The operations of a request, or the ServiceError that refuses the whole request."""
    if not isinstance(body, list):
        raise hub_error("ArgumentInvalid", "the body of POST /devices must be a JSON array of devices")
    if not body:
        raise hub_error("ArgumentInvalid", "the device array is empty")
    if len(body) > MAX_DEVICES:
        raise hub_error("TooManyDevices", f"{len(body)} devices in one bulk operation; at most {MAX_DEVICES}")
    ops: list[Operation] = []
    seen: set[str] = set()
    for i, entry in enumerate(body):
        if not isinstance(entry, dict):
            raise hub_error("ArgumentInvalid", f"device [{i}] must be a JSON object")
        device_id = entry.get("id")
        if not isinstance(device_id, str) or not device_id:
            raise hub_error("ArgumentInvalid", f"device [{i}] has no id")
        if entry.get("moduleId"):
            raise not_supported("Bulk operations on modules")
        raw_mode = entry.get("importMode") or "createOrUpdate"
        mode = _BY_LOWER.get(raw_mode.lower()) if isinstance(raw_mode, str) else None
        if mode is None:
            raise hub_error("ArgumentInvalid", f"device {device_id}: importMode {raw_mode!r} is not one of {', '.join(MODES)}")
        if device_id in seen:
            raise hub_error("DeviceDefinedMultipleTimes", f"device {device_id} appears more than once")
        seen.add(device_id)
        ops.append(Operation(device_id, mode, entry))
    return ops


def result(errors: list[dict]) -> tuple[int, dict]:
    """HTTP status and BulkRegistryOperationResult: 200 when every operation succeeded, else 400."""
    return (400 if errors else 200), {"isSuccessful": not errors, "errors": errors, "warnings": []}


async def apply(ops: list[Operation], registry: Registry, twins: TwinUpdater) -> list[dict]:
    """Apply each operation; the DeviceRegistryOperationErrors of those that failed."""
    errors = []
    for op in ops:
        try:
            await _apply(op, registry, twins)
        except ServiceError as exc:
            errors.append({"deviceId": op.device_id, "errorCode": exc.error_code, "errorStatus": exc.message})
    return errors


async def _apply(op: Operation, registry: Registry, twins: TwinUpdater) -> None:
    existing = registry.get(op.device_id)
    if existing is None and op.mode in _MUST_EXIST:
        raise hub_error("DeviceNotFound", f"device {op.device_id} not found")
    key: Key = (op.device_id, None)
    if op.mode in ("delete", "deleteIfMatchETag"):
        await registry.delete(op.device_id, if_match=_needed(op, op.etag) if op.mode == "deleteIfMatchETag" else None)
        return
    if op.mode in ("updateTwin", "updateTwinIfMatchETag"):
        twin_etag = op.entry.get("twinETag") if isinstance(op.entry.get("twinETag"), str) else None
        if_match = _needed(op, twin_etag) if op.mode == "updateTwinIfMatchETag" else None
        await twins.service_update(key, op.twin or {}, if_match=if_match, replace=False)
        return
    if op.mode == "create":
        if_match = None  # the registry refuses an existing device (DeviceAlreadyExists)
    elif op.mode in ("createOrUpdate", "update"):
        if_match = "*"
    elif op.mode == "createOrUpdateIfMatchETag" and existing is None:
        if_match = None
    else:  # updateIfMatchETag, createOrUpdateIfMatchETag of an existing device
        if_match = _needed(op, op.etag)
    await registry.put_device(op.identity(), if_match=if_match)
    if op.twin is not None:
        await twins.service_update(key, op.twin, if_match=None, replace=False)


def _needed(op: Operation, etag: str | None) -> str:
    if not etag:
        name = "twinETag" if op.mode == "updateTwinIfMatchETag" else "eTag"
        raise hub_error("PreconditionFailed", f"importMode {op.mode} needs the {name} to match, and none was given")
    return etag
