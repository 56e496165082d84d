"""Which linked hub a registration goes to, and what a repeated registration does. Pure functions.

Allocation: `static` takes the enrollment's hub, `hashed` (the default) spreads registration ids
evenly and stably over the candidate hubs, `geoLatency` has no geography here and hashes too;
`custom` asks a webhook and is decided by the caller. Reprovisioning follows the enrollment's
policy: `updateHubAssignment: false` keeps the previous assignment as it is; otherwise the
device's data is migrated (`migrateDeviceData: true`) or reset to the enrollment's initial twin.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..protocol import dps as p


def candidates(enrollment: dict, linked_hubs: list[str]) -> list[str]:
    hubs = enrollment.get("iotHubs") or linked_hubs
    if not hubs:
        raise p.dps_error("NoHubLinked", "no IoT hub is linked to this enrollment")
    return list(hubs)


def choose_hub(enrollment: dict, linked_hubs: list[str], registration_id: str) -> str:
    policy = enrollment.get("allocationPolicy") or "hashed"
    hubs = candidates(enrollment, linked_hubs)
    if policy == "static":
        return enrollment.get("iotHubHostName") or hubs[0]
    if policy == "custom":
        raise ValueError("custom allocation is decided by a webhook, not here")
    ordered = sorted(hubs, key=str.lower)
    digest = hashlib.sha256(registration_id.lower().encode()).digest()
    return ordered[int.from_bytes(digest[:8], "big") % len(ordered)]


@dataclass(frozen=True)
class Plan:
    hub: str
    substatus: str
    apply_initial_twin: bool  # the device's twin starts from the enrollment's initial twin
    unchanged: bool = False  # the previous assignment stands (updateHubAssignment false)


def plan(previous: dict | None, enrollment: dict, chosen_hub: str, initial_hub: str | None) -> Plan:
    """What to do for a registration whose previous assigned state is `previous` (or None).

    `initial_hub` is the hub of the very first assignment of this registration id.
    """
    if previous is None or previous.get("status") != p.ASSIGNED or not previous.get("assignedHub"):
        return Plan(chosen_hub, p.INITIAL_ASSIGNMENT, True)
    policy = enrollment.get("reprovisionPolicy") or {}
    update = policy.get("updateHubAssignment", True)
    migrate = policy.get("migrateDeviceData", True)
    before = previous["assignedHub"]
    if not update:
        return Plan(before, previous.get("substatus") or p.INITIAL_ASSIGNMENT, False, unchanged=True)
    if chosen_hub.lower() == before.lower():
        if migrate:
            return Plan(chosen_hub, previous.get("substatus") or p.INITIAL_ASSIGNMENT, False)
        return Plan(chosen_hub, p.DATA_RESET, True)
    if initial_hub is not None and chosen_hub.lower() == initial_hub.lower():
        return Plan(chosen_hub, p.REPROVISIONED_TO_INITIAL, not migrate)
    return Plan(chosen_hub, p.DATA_MIGRATED if migrate else p.DATA_RESET, not migrate)
