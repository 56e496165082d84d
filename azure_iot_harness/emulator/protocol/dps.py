"""The Device Provisioning Service's protocol: topics, registration ids, answers, and DPS's
error catalogue (beside IoT Hub's in `errors`, in the same style). Pure functions.

MQTT requests are `$dps/registrations/PUT/iotdps-register/?$rid={rid}` and
`$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}`; answers go to
`$dps/registrations/res/{status}/?$rid={rid}` with `&retry-after={s}` on 202 and 429 and no
other parameter (the Python SDK parses everything after the second `$` as its query).
The REST API carries the same documents and error bodies.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any

from ...errors import ProtocolViolation, ProvisioningError
from . import jsontext

SUBSCRIBE_FILTER = "$dps/registrations/res/#"
_REGISTER = "$dps/registrations/PUT/iotdps-register/"
_POLL = "$dps/registrations/GET/iotdps-get-operationstatus/"

# Up to 128 of letters, digits and - . _ :, ending with a letter, digit or '-'. Case-insensitive.
_REGISTRATION_ID = re.compile(r"[A-Za-z0-9\-._:]{0,127}[A-Za-z0-9\-]")

# Operation statuses, and the registration substatuses of an assignment.
ASSIGNING, ASSIGNED, FAILED, DISABLED = "assigning", "assigned", "failed", "disabled"
INITIAL_ASSIGNMENT = "initialAssignment"
DATA_MIGRATED = "deviceDataMigrated"
DATA_RESET = "deviceDataReset"
REPROVISIONED_TO_INITIAL = "reprovisionedToInitialAssignment"

# name: (HTTP status, DPS error code). The leading three digits are the status (documented).
# The errors are `ProvisioningError`s of the one hierarchy (azure_iot_harness.errors).
# Observed from the service: 401002 for a SAS that does not verify, 400209 for a failed custom
# allocation; 404201/404202 appear in service API answers. The rest follow the numbering of
# Azure IoT's shared error codes and are the emulator's choice where DPS's own is not known.
CATALOGUE: dict[str, tuple[int, int]] = {
    "InvalidApiVersion": (400, 400001),
    "ArgumentInvalid": (400, 400004),
    "ArgumentNull": (400, 400005),
    "InvalidFormat": (400, 400006),
    "NoHubLinked": (400, 400208),
    "CustomAllocationFailed": (400, 400209),
    "Unauthorized": (401, 401002),
    "ScopeNotFound": (404, 404200),
    "EnrollmentNotFound": (404, 404201),
    "RegistrationNotFound": (404, 404202),
    "EnrollmentGroupNotFound": (404, 404203),
    "OperationNotFound": (404, 404204),
    "EnrollmentExists": (409, 409201),
    "EnrollmentGroupExists": (409, 409203),
    "PreconditionFailed": (412, 412001),
    "UnsupportedMediaType": (415, 415001),
    "Throttled": (429, 429001),
    "ServerError": (500, 500001),
    "NotImplemented": (501, 501000),
}


def dps_error(name: str, message: str) -> ProvisioningError:
    status, code = CATALOGUE[name]
    return ProvisioningError(status, code, message)


def not_supported(feature: str) -> ProvisioningError:
    # 400, not 5xx: device SDKs retry 5xx (and 429) answers until they time out.
    return dps_error("ArgumentInvalid", f"{feature} is not supported by the emulator")


def error_body(err: ProvisioningError, now: dt.datetime | None = None) -> dict:
    return {"errorCode": err.code, "trackingId": str(uuid.uuid4()), "message": err.message, "timestampUtc": timestamp(now)}


# ---- registration ids and request bodies ------------------------------------------------------


def check_registration_id(value: object) -> str:
    if not isinstance(value, str) or not _REGISTRATION_ID.fullmatch(value):
        raise dps_error(
            "ArgumentInvalid",
            f"registration id {value!r} is invalid: up to 128 letters, digits or - . _ :, ending with a letter, digit or '-'",
        )
    return value


def same_registration(a: str, b: str) -> bool:
    """Registration ids are case-insensitive."""
    return a.lower() == b.lower()


@dataclass(frozen=True)
class DeviceRegistration:
    registration_id: str
    payload: Any


def parse_registration(raw: bytes, registration_id: str) -> DeviceRegistration:
    """The body of a register request from the device `registration_id` (its credentials').

    The credentials name the registration, so the body may leave it out: the Embedded C SDK
    sends no body at all when there is no custom payload, and DPS registers the device. A
    `registrationId` that is there must be that registration's.
    """
    if not raw.strip():
        return DeviceRegistration(registration_id, None)
    try:
        body = jsontext.loads(raw)
    except jsontext.JsonError as exc:
        raise dps_error("InvalidFormat", f"the register request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise dps_error("ArgumentInvalid", f"the register request body must be a JSON object, not {type(body).__name__}")
    if body.get("registrationId") is None:
        claimed = registration_id
    else:
        claimed = check_registration_id(body["registrationId"])
    if not same_registration(claimed, registration_id):
        raise dps_error(
            "ArgumentInvalid", f"registrationId {claimed!r} in the body is not {registration_id!r}, whose credentials were given"
        )
    if body.get("tpm") is not None:
        raise not_supported("TPM attestation")
    if body.get("csr") is not None:
        raise not_supported("Certificate signing requests (csr, certificate issuance)")
    return DeviceRegistration(claimed, body.get("payload"))


# ---- MQTT topics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    kind: str  # "register" or "poll"
    rid: str
    operation_id: str | None = None


def parse_request_topic(topic: str) -> Request:
    """A DPS request topic; ProtocolViolation (the connection is closed) for anything else."""
    if topic.startswith(_REGISTER + "?"):
        kind = "register"
    elif topic.startswith(_POLL + "?"):
        kind = "poll"
    else:
        raise ProtocolViolation(f"PUBLISH to {topic!r}, which is not a Device Provisioning Service topic")
    params: dict[str, str] = {}
    for part in topic.partition("?")[2].split("&"):
        if part:
            name, _, value = part.partition("=")
            params[name] = urllib.parse.unquote(value)
    if "$rid" not in params:
        raise ProtocolViolation(f"PUBLISH to {topic!r} without $rid")
    operation_id = params.get("operationId")
    if kind == "poll" and not operation_id:
        raise ProtocolViolation(f"PUBLISH to {topic!r} without operationId")
    return Request(kind, params["$rid"], operation_id if kind == "poll" else None)


def response_topic(status: int, rid: str, retry_after: int | None = None) -> str:
    topic = f"$dps/registrations/res/{status}/?$rid={rid}"
    return topic + (f"&retry-after={retry_after}" if retry_after is not None else "")


# ---- answers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One answer to a device: status, JSON body, and the retry-after seconds (202 and 429)."""

    status: int
    body: dict
    retry_after: int | None = None

    @classmethod
    def error(cls, err: ProvisioningError, retry_after: int | None = None, now: dt.datetime | None = None) -> Answer:
        return cls(err.status, error_body(err, now), retry_after)


def assigning(operation_id: str, registration_id: str | None = None) -> dict:
    """The operation while it is still assigning; polls carry the registration id too."""
    out: dict = {"operationId": operation_id, "status": ASSIGNING}
    if registration_id is not None:
        out["registrationState"] = {"registrationId": registration_id, "status": ASSIGNING}
    return out


def registration_state(
    registration_id: str, created: str, outcome: dict, attestation: dict, now: dt.datetime | None = None
) -> dict:
    """A DeviceRegistrationResult in DPS's field order, last updated `now`: `outcome` holds status
    and assignedHub, deviceId, substatus (assigned), errorCode and errorMessage (failed), payload
    (if any)."""
    state = {"registrationId": registration_id, "createdDateTimeUtc": created}
    for name in ("assignedHub", "deviceId", "status", "substatus", "errorCode", "errorMessage"):
        if name in outcome:
            state[name] = outcome[name]
    state.update(attestation)
    state["lastUpdatedDateTimeUtc"] = timestamp(now)
    state["etag"] = new_etag()
    if outcome.get("payload") is not None:
        state["payload"] = outcome["payload"]
    return state


def finished(operation_id: str, state: dict) -> dict:
    return {"operationId": operation_id, "status": state["status"], "registrationState": state}


# ---- identifiers and time in DPS's shapes -----------------------------------------------------


def new_operation_id() -> str:
    return f"5.{secrets.token_hex(8)}.{uuid.uuid4()}"


def new_etag() -> str:
    """Base64 of a quoted GUID, the shape DPS uses."""
    return base64.b64encode(f'"{uuid.uuid4()}"'.encode()).decode()


def timestamp(now: dt.datetime | None = None) -> str:
    """UTC with seven fractional digits, as DPS writes it."""
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}0Z"
