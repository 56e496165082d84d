"""Custom allocation: DPS asks a webhook which hub a device goes to.

DPS POSTs `{individualEnrollment | enrollmentGroup, deviceRuntimeContext, linkedHubs}` to the
enrollment's `customAllocationDefinition.webhookUrl`; the webhook answers
`{iotHubHostName, initialTwin?, payload?}`, and `payload` goes back to the device in its
registration state. A webhook that fails makes the registration fail with 400209, as in DPS.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from ..protocol import dps as p
from ..protocol import jsontext
from . import enrollments
from .attestation import Attestation

TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Decision:
    hub: str
    initial_twin: dict | None
    payload: Any


def request_body(att: Attestation, payload: Any, previous: dict | None, linked_hubs: list[str]) -> dict:
    context: dict = {"registrationId": att.registration_id}
    if previous is not None and previous.get("status") == p.ASSIGNED:
        context["currentIotHubHostName"] = previous.get("assignedHub")
        context["currentDeviceId"] = previous.get("deviceId")
    if att.kind == "symmetricKey":
        context["symmetricKey"] = {}
    else:
        assert att.certificate is not None
        context["x509"] = {"clientCertificate": enrollments.certificate_info(att.certificate)}
    context["payload"] = payload
    which = "enrollmentGroup" if att.group_id else "individualEnrollment"
    return {which: enrollments.view(att.enrollment), "deviceRuntimeContext": context, "linkedHubs": list(linked_hubs)}


def decision(answer: object, linked_hubs: list[str]) -> Decision:
    """The webhook's answer, checked; CustomAllocationFailed when it is unusable."""
    if not isinstance(answer, dict):
        raise p.dps_error("CustomAllocationFailed", "Custom allocation failed: the webhook did not answer a JSON object")
    hub = answer.get("iotHubHostName")
    linked = next((h for h in linked_hubs if isinstance(hub, str) and h.lower() == hub.lower()), None)
    if linked is None:
        raise p.dps_error(
            "CustomAllocationFailed", f"Custom allocation failed: iotHubHostName {hub!r} is not a linked IoT hub ({', '.join(linked_hubs)})"
        )
    twin = answer.get("initialTwin")
    if twin is not None:
        twin = enrollments.initial_twin(twin)
    return Decision(linked, twin, answer.get("payload"))


async def call(url: str, body: dict, timeout: float = TIMEOUT_SECONDS) -> object:
    """POST the allocation request; the parsed JSON answer."""

    def post() -> object:
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise p.dps_error("CustomAllocationFailed", f"Custom allocation failed with status code: {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise p.dps_error("CustomAllocationFailed", f"Custom allocation failed: cannot reach {url}: {exc}") from None
        try:
            return jsontext.loads(raw)
        except jsontext.JsonError:
            raise p.dps_error("CustomAllocationFailed", "Custom allocation failed: the webhook's answer is not JSON") from None

    return await asyncio.to_thread(post)
