"""Device and module twins: validation, patches, metadata and versions. Pure functions.

A twin is kept as one JSON-able dict:
`{"tags", "desired", "reported", "desiredMeta", "reportedMeta", "desiredVersion",
"reportedVersion", "version"}`, plus `"modelId"` once the device announced one; the views
below turn it into what MQTT and REST clients see.
"""

from __future__ import annotations

import base64
import copy
import math
from typing import Any

from ...errors import HarnessError
from . import jsontext

MAX_DEPTH = 10
MAX_KEY_BYTES = 1024
MAX_STRING_BYTES = 4 * 1024
MAX_SECTION_BYTES = {"tags": 8 * 1024, "desired": 32 * 1024, "reported": 32 * 1024}
MIN_INT, MAX_INT = -4503599627370496, 4503599627370495
_RESERVED = ("$version", "$metadata")


class TwinError(HarnessError):
    """A patch IoT Hub refuses with status 400."""


def new_twin() -> dict:
    return {
        "tags": {},
        "desired": {},
        "reported": {},
        "desiredMeta": {},
        "reportedMeta": {},
        "desiredVersion": 1,
        "reportedVersion": 1,
        "version": 1,
    }


def parse_patch(body: bytes | str) -> dict:
    """A JSON object, or TwinError."""
    try:
        patch = jsontext.loads(body)
    except jsontext.JsonError as exc:
        raise TwinError(f"malformed JSON: {exc}") from None
    if not isinstance(patch, dict):
        raise TwinError("a twin patch must be a JSON object")
    return patch


def parse_reported_patch(body: bytes) -> dict:
    """A reported-properties patch as a device publishes it, or TwinError.

    Firmware that publishes its whole fixed-size buffer sends the JSON followed by NUL bytes
    (an official Plug and Play sample does), and IoT Hub's JSON reader skips them. So trailing
    NULs (among trailing whitespace) are dropped; anything else after the JSON stays an error.
    """
    return parse_patch(body.rstrip(b"\0 \t\r\n"))


def strip_reserved(section: dict) -> dict:
    """Drop `$version` and `$metadata` at a section's top: service SDKs send back what they read."""
    return {k: v for k, v in section.items() if k not in _RESERVED}


def validate(section: str, patch: dict, *, allow_null: bool = True) -> None:
    """Key and value rules for one section's patch (tags, desired or reported)."""
    _check_object(patch, section, 1, allow_null)


def _check_object(obj: dict, path: str, depth: int, allow_null: bool) -> None:
    if depth > MAX_DEPTH:
        raise TwinError(f"{path}: nesting deeper than {MAX_DEPTH} levels")
    for key, value in obj.items():
        _check_key(key, path)
        where = f"{path}.{key}"
        if value is None:
            if not allow_null:
                raise TwinError(f"{where}: null is not allowed here")
        elif isinstance(value, dict):
            _check_object(value, where, depth + 1, allow_null)
        else:
            _check_value(value, where, depth)


def _check_key(key: str, path: str) -> None:
    if not key:
        raise TwinError(f"{path}: empty property name")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise TwinError(f"{path}: property name longer than {MAX_KEY_BYTES} bytes")
    bad = [c for c in key if c in ".$ " or ord(c) < 32 or ord(c) == 127]
    if bad:
        raise TwinError(f"{path}: property name {key!r} may not contain '.', '$', spaces or control characters")


def _check_value(value: Any, where: str, depth: int) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise TwinError(f"{where}: integer {value} outside [{MIN_INT}, {MAX_INT}]")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise TwinError(f"{where}: number is not finite")
    elif isinstance(value, str):
        if len(value.encode()) > MAX_STRING_BYTES:
            raise TwinError(f"{where}: string longer than {MAX_STRING_BYTES} bytes")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if item is None:
                raise TwinError(f"{where}[{i}]: arrays may not hold null")
            if isinstance(item, dict):
                _check_object(item, f"{where}[{i}]", depth + 1, allow_null=False)
            else:
                _check_value(item, f"{where}[{i}]", depth + 1)
    else:
        raise TwinError(f"{where}: unsupported value {value!r}")


def size(section: dict) -> int:
    """IoT Hub's size of a section: names and string lengths, 8 per number, 4 per boolean."""
    total = 0
    for key, value in section.items():
        total += len(key.encode()) + _value_size(value)
    return total


def _value_size(value: Any) -> int:
    if isinstance(value, bool):
        return 4
    if isinstance(value, (int, float)):
        return 8
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, dict):
        return size(value)
    if isinstance(value, list):
        return sum(_value_size(v) for v in value)
    return 0


def _merge(target: dict, meta: dict, patch: dict, stamp: dict) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
            meta.pop(key, None)
        elif isinstance(value, dict):
            child = target.get(key)
            if not isinstance(child, dict):
                child = target[key] = {}
                meta[key] = {}
            child_meta = meta.setdefault(key, {})
            _merge(child, child_meta, value, stamp)
            child_meta.update(stamp)
        else:
            target[key] = copy.deepcopy(value)
            meta[key] = dict(stamp)
    meta.update(stamp)


def apply_patch(twin: dict, section: str, patch: dict, now: str) -> dict:
    """A new twin with `patch` merged into tags, desired or reported (null deletes a member).

    Checks the rules and the section's size after the merge; bumps versions and metadata.
    """
    patch = strip_reserved(patch)
    validate(section, patch)
    new = copy.deepcopy(twin)
    if section == "tags":
        _merge(new["tags"], {}, patch, {})
    else:
        version = new[f"{section}Version"] + 1
        stamp = {"$lastUpdated": now}
        if section == "desired":
            stamp["$lastUpdatedVersion"] = version
        _merge(new[section], new[f"{section}Meta"], patch, stamp)
        new[f"{section}Version"] = version
    limit = MAX_SECTION_BYTES[section]
    if size(new[section]) > limit:
        raise TwinError(f"{section} would be {size(new[section])} bytes, over IoT Hub's {limit}-byte limit")
    new["version"] += 1
    return new


def replace_section(twin: dict, section: str, value: dict, now: str) -> dict:
    """A new twin whose tags or desired section is `value` (a REST PUT replaces both)."""
    value = strip_reserved(value)
    validate(section, value, allow_null=False)
    new = copy.deepcopy(twin)
    if section == "tags":
        new["tags"] = copy.deepcopy(value)
    else:
        version = new[f"{section}Version"] + 1
        stamp = {"$lastUpdated": now}
        if section == "desired":
            stamp["$lastUpdatedVersion"] = version
        new[section], new[f"{section}Meta"] = {}, {}
        _merge(new[section], new[f"{section}Meta"], value, stamp)
        new[f"{section}Version"] = version
    if size(new[section]) > MAX_SECTION_BYTES[section]:
        raise TwinError(f"{section} over IoT Hub's {MAX_SECTION_BYTES[section]}-byte limit")
    new["version"] += 1
    return new


def clearing_patch(section: dict) -> dict:
    """The patch that removes every member of a section: what `"desired": null` (or `"tags": null`)
    in a REST PATCH means, and what the device is told (each removed property set to null)."""
    return {key: None for key in strip_reserved(section)}


def replacement_notice(old: dict, new: dict) -> dict:
    """What a device is told when a REST PUT replaces its desired section: the new section, with
    null for every property that no longer exists (IoT Hub diffs by existence, not by value)."""
    out = copy.deepcopy(new)
    for key, value in old.items():
        if key not in new:
            out[key] = None
        elif isinstance(value, dict) and isinstance(new[key], dict):
            out[key] = replacement_notice(value, new[key])
    return out


def service_update(twin: dict, body: dict, now: str, *, replace: bool) -> tuple[dict, dict | None]:
    """A REST PATCH (merge) or PUT (replace) of a twin's tags and desired properties.

    Returns the new twin and, when the desired section changed, the body the device is notified
    with (without `$version`). In a PATCH a null section (`"tags": null`, `"desired": null`)
    removes all of it and a null member removes that member, at any depth; a PUT refuses null
    members, replaces the tags (absent: none) and replaces desired when given (null: none).
    TwinError for what IoT Hub refuses with 400.
    """
    tags = body.get("tags")
    props = body.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, dict) or (tags is not None and not isinstance(tags, dict)):
        raise TwinError("tags and properties must be JSON objects")
    if "reported" in props:
        raise TwinError("reported properties can only be changed by the device")
    desired = props.get("desired")
    if desired is not None and not isinstance(desired, dict):
        raise TwinError("properties.desired must be a JSON object")
    new = twin
    notice: dict | None = None
    if replace:
        new = replace_section(new, "tags", tags or {}, now)
        if "desired" in props:
            new = replace_section(new, "desired", desired or {}, now)
            notice = replacement_notice(twin["desired"], new["desired"])
        return new, notice
    if "tags" in body and tags is None:
        tags = clearing_patch(twin["tags"])
    if "desired" in props and desired is None:
        desired = clearing_patch(twin["desired"])
    if tags:
        new = apply_patch(new, "tags", tags, now)
    if desired:
        new = apply_patch(new, "desired", desired, now)
        notice = strip_reserved(desired)
    return new, notice


# ---- views -------------------------------------------------------------------------------------


def etag(twin: dict) -> str:
    """Azure's twin etag: base64 of the 64-bit big-endian twin version."""
    return base64.b64encode(twin["version"].to_bytes(8, "big")).decode()


def device_view(twin: dict) -> dict:
    """What a device gets for a twin GET: desired and reported with their `$version`s only."""
    return {
        "desired": {**twin["desired"], "$version": twin["desiredVersion"]},
        "reported": {**twin["reported"], "$version": twin["reportedVersion"]},
    }


def properties_view(twin: dict) -> dict:
    """The `properties` of the service view, with `$metadata`."""
    out = {}
    for section in ("desired", "reported"):
        meta = twin[f"{section}Meta"] or {"$lastUpdated": "0001-01-01T00:00:00Z"}
        out[section] = {**twin[section], "$metadata": meta, "$version": twin[f"{section}Version"]}
    return out


def desired_notification(patch: dict, version: int) -> dict:
    """The body pushed to a device on a desired change: the patch as applied, plus `$version`."""
    return {**strip_reserved(patch), "$version": version}
