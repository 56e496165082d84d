"""Which topic filters IoT Hub grants a device or a module, and how many it keeps. Pure.

IoT Hub supports only its documented filters and at most five subscriptions on a connection;
it answers anything else by closing the connection (there is no SUBACK failure code from it).
QoS 2 is granted as 1. The hub and the edge apply these same rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ...errors import ProtocolViolation
from .topics import c2d_filters

MAX_SUBSCRIPTIONS = 5
TWIN_RESPONSES = "$iothub/twin/res/#"
DESIRED_UPDATES = "$iothub/twin/PATCH/properties/desired/#"
METHOD_REQUESTS = "$iothub/methods/POST/#"


def module_input_filters(device_id: str, module_id: str) -> frozenset[str]:
    """The two forms a module subscribes to its inputs with."""
    return frozenset({f"devices/{device_id}/modules/{module_id}/inputs/#", f"devices/{device_id}/modules/{module_id}/#"})


def allowed_filters(device_id: str, module_id: str | None) -> frozenset[str]:
    """The documented filters of one identity (a device's C2D filter in both forms, modules
    have none)."""
    common = {TWIN_RESPONSES, DESIRED_UPDATES, METHOD_REQUESTS}
    if module_id is None:
        return frozenset(common | c2d_filters(device_id))
    return frozenset(common | module_input_filters(device_id, module_id))


def grant(
    current: Mapping[str, int], requested: Iterable[tuple[str, int]], allowed: frozenset[str]
) -> tuple[dict[str, int], list[int]]:
    """The subscriptions after a SUBSCRIBE (filter -> granted QoS) and its SUBACK codes.

    ProtocolViolation, on which the connection closes, for an undocumented filter or for more
    than MAX_SUBSCRIPTIONS at once."""
    subs = dict(current)
    granted = []
    for topic, qos in requested:
        if topic not in allowed:
            raise ProtocolViolation(f"SUBSCRIBE to {topic!r}, which is not an IoT Hub topic filter")
        subs[topic] = min(qos, 1)
        granted.append(min(qos, 1))
    if len(subs) > MAX_SUBSCRIPTIONS:
        raise ProtocolViolation(f"more than {MAX_SUBSCRIPTIONS} subscriptions on one connection")
    return subs, granted
