"""The rules as pure functions over what the trace recorded (no sockets, no emulator): topic
and filter catalogues, property-bag encoding, the username grammar, and how retry intervals
are told apart (exponential with jitter, or constant/linear)."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Set as AbstractSet

MAX_KEEP_ALIVE = 1177  # 1.5 × this stays under Azure's load balancer's 1767 s idle cap
LOAD_BALANCER_IDLE = 1767
MAX_SUBSCRIPTIONS = 5
DTMI_RE = re.compile(r"^dtmi:[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?(?::[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?)*;[1-9][0-9]{0,8}$")
API_VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
# Unreserved characters and percent escapes: what a property-bag key or value may hold.
_ENCODED_RE = re.compile(r"^(?:[A-Za-z0-9\-._~!$'()*+,;:@/]|%[0-9A-Fa-f]{2})*$")


def telemetry_prefix(device_id: str, module_id: str | None = None) -> str:
    mid = f"/modules/{module_id}" if module_id else ""
    return f"devices/{device_id}{mid}/messages/events/"


def is_telemetry(topic: str, device_id: str, module_id: str | None = None) -> bool:
    return topic.startswith(telemetry_prefix(device_id, module_id))


def documented_publish(topic: str, device_id: str, module_id: str | None = None) -> bool:
    """A topic a device may publish to on IoT Hub."""
    if is_telemetry(topic, device_id, module_id):
        return True
    return bool(
        re.match(r"^\$iothub/twin/(GET|PATCH/properties/reported)/\?\$rid=[^/]+$", topic)
        or re.match(r"^\$iothub/methods/res/\d{3}/\?\$rid=[^/]+$", topic)
    )


def documented_filter(topic_filter: str, device_id: str, module_id: str | None = None) -> bool:
    """A topic filter IoT Hub accepts in SUBSCRIBE (`#` only where Azure documents it)."""
    base = f"devices/{device_id}" + (f"/modules/{module_id}" if module_id else "")
    allowed = {
        f"devices/{device_id}/messages/devicebound/#",
        "$iothub/twin/res/#",
        "$iothub/twin/PATCH/properties/desired/#",
        "$iothub/methods/POST/#",
    }
    if module_id:
        allowed |= {f"{base}/inputs/#", f"{base}/#"}
    return topic_filter in allowed


def property_bag(topic: str, device_id: str, module_id: str | None = None) -> str:
    return topic[len(telemetry_prefix(device_id, module_id)):].rstrip("/")


def property_bag_problems(bag: str) -> list[str]:
    """What is wrong with the encoding of a telemetry topic's property bag (`k=v&k2=v2`)."""
    problems: list[str] = []
    if not bag:
        return problems
    for part in bag.split("&"):
        key, sep, value = part.partition("=")
        if not key:
            problems.append(f"{part!r}: a property without a name")
            continue
        for what, text in (("name", key), ("value", value)):
            if not _ENCODED_RE.match(text):
                problems.append(f"{key!r}: the {what} {text!r} is not percent-encoded")
        if key.startswith("$.") and key not in ("$.ct", "$.ce", "$.mid", "$.cid", "$.uid", "$.to", "$.exp", "$.ifid", "$.cdid",
                                                "$.ctime", "$.on", "$.sub", "$.schema"):
            problems.append(f"{key!r}: not a system property IoT Hub knows")
        if not sep and key.startswith("$."):
            problems.append(f"{key!r}: a system property without a value")
    return problems


def bag_values(bag: str) -> dict[str, str]:
    out = {}
    for part in bag.split("&") if bag else []:
        key, _, value = part.partition("=")
        out[urllib.parse.unquote(key)] = urllib.parse.unquote(value)
    return out


def username_problems(username: str, host: str, device_id: str, module_id: str | None = None) -> tuple[list[str], list[str]]:
    """(errors, warnings) for a hub CONNECT username `{host}/{device}[/{module}]/?api-version=…`."""
    errors: list[str] = []
    warnings: list[str] = []
    who = f"{host}/{device_id}" + (f"/{module_id}" if module_id else "")
    if not username:
        return [f"no username (IoT Hub wants {who}/?api-version=…)"], warnings
    head, sep, query = username.partition("?")
    if head.rstrip("/").lower() != who.lower():
        if head.startswith(who + "/api-version="):  # the legacy form without `?`
            warnings.append("api-version without `?` (the legacy form): use {host}/{device}/?api-version=…")
            query = head[len(who) + 1:]
        else:
            errors.append(f"starts {head!r}, not {who + '/'!r}")
    elif not head.endswith("/"):
        warnings.append(f"no `/` after the device id: {head!r}")
    params = urllib.parse.parse_qs(query, keep_blank_values=True) if query else {}
    version = (params.get("api-version") or [""])[0]
    if not version:
        warnings.append("no api-version (Azure's docs ask for one; without it the hub may behave unexpectedly)")
    elif not API_VERSION_RE.match(version):
        errors.append(f"api-version {version!r} is not a date such as 2021-04-12")
    for model in params.get("model-id", []):
        if not DTMI_RE.match(model):
            errors.append(f"model-id {model!r} is not a DTMI such as dtmi:com:example:Thermostat;1")
    return errors, warnings


def model_id(username: str) -> str | None:
    query = username.partition("?")[2]
    values = urllib.parse.parse_qs(query).get("model-id")
    return values[0] if values else None


def backoff_problems(intervals: list[float], *, minimum: float = 1.0) -> tuple[list[str], list[str]]:
    """(errors, warnings) for the gaps between successive connection attempts after refusals.

    Exponential back-off grows by a factor each time, so each gap grows by more than the one
    before; constant (all gaps alike) and linear (gaps growing by a fixed amount) retries fail. Jitter shows as ratios that are not all
    the same; without it devices that lost the hub together return together (a warning).
    """
    errors: list[str] = []
    warnings: list[str] = []
    if len(intervals) < 3:
        return [f"only {len(intervals) + 1} attempts: not enough to judge the back-off"], warnings
    if min(intervals) < minimum:
        errors.append(f"retried after {min(intervals):.2f} s (at least {minimum:g} s between attempts)")
    ratios = [b / a for a, b in zip(intervals, intervals[1:]) if a > 0]
    steps = [b - a for a, b in zip(intervals, intervals[1:])]
    if max(intervals) < 1.5 * min(intervals):
        errors.append("constant interval: the gaps do not grow")
    elif steps[-1] < 1.8 * max(steps[0], 0.05):
        # Exponential gaps grow by more each time; linear ones by the same amount.
        errors.append(f"the gaps grow by a fixed amount ({', '.join(f'{d:+.2f}' for d in steps)} s): linear, not exponential")
    # Timing noise alone moves a ratio by about 1 %: three ratios this close mean no jitter.
    if len(ratios) >= 3 and max(ratios) - min(ratios) < 0.03 and not errors:
        warnings.append(f"no jitter: every gap is {ratios[0]:.2f}× the one before")
    return errors, warnings


def storm_problems(connects: int, window: float, *, limit: int) -> list[str]:
    if connects > limit:
        return [f"{connects} connection attempts in {window:.0f} s (more than {limit}): a reconnect storm"]
    return []


MAX_TOKEN_LIFETIME = 30 * 24 * 3600  # beyond this a device token is a standing credential (the SDKs make 1-hour tokens)
SHORT_TOKEN = 60  # a token with less left than this at CONNECT leaves no time to work


def sas_problems(sas: dict, connected_at: float, hubs: AbstractSet[str], device_id: str,
                 gateways: AbstractSet[str] = frozenset(), module_id: str | None = None) -> tuple[list[str], list[str]]:
    """(errors, warnings) for a CONNECT's SAS token claims {sr, se, skn} (never the signature):
    the audience must cover `{hub}/devices/{device}` for one of the hub's names (a gateway's name
    is accepted by edgeHub, with a warning), the expiry must lie ahead and within 30 days."""
    errors: list[str] = []
    warnings: list[str] = []
    if "error" in sas:
        return [f"the password is not a SAS token: {sas['error']}"], []
    audience = urllib.parse.unquote(str(sas.get("sr", "")))
    for scheme in ("https://", "http://", "amqps://"):
        if audience.lower().startswith(scheme):
            audience = audience[len(scheme):]
    host, _, path = audience.partition("/")
    own = ["devices", device_id, *(["modules", module_id] if module_id else [])]
    segments = [s for s in path.split("/") if s]
    covers = segments == own[: len(segments)] and len(segments) in (0, 2, len(own))
    if host.lower() not in hubs and host.lower() not in gateways:
        errors.append(f"audience {audience!r} names {host!r}, not the hub ({', '.join(sorted(hubs))})")
    elif not covers:
        errors.append(f"audience {audience!r} does not cover {host}/{'/'.join(own)}")
    else:
        if host.lower() in gateways and host.lower() not in hubs:
            warnings.append(f"audience names the gateway {host!r}: edgeHub takes it, IoT Hub itself would not")
        if not segments:
            warnings.append(f"audience {audience!r} is the whole hub: {host}/{'/'.join(own)} is enough")
    if sas.get("skn"):
        warnings.append(f"signed with shared access policy {sas['skn']!r}: a device should use its own key")
    try:
        left = float(sas.get("se", 0)) - connected_at
    except (TypeError, ValueError):
        return [*errors, f"expiry se={sas.get('se')!r} is not a number"], warnings
    if left <= 0:
        errors.append(f"the token had expired {-left:.0f} s before the CONNECT (se={sas.get('se')})")
    elif left > MAX_TOKEN_LIFETIME:
        errors.append(f"the token is valid for {left / 86400:.0f} days: a leaked token works that long (Azure's SDKs make 1-hour tokens and renew them)")
    elif left < SHORT_TOKEN:
        warnings.append(f"the token had {left:.0f} s left at CONNECT")
    return errors, warnings
