"""Individual enrollments and enrollment groups as the DPS service API takes them. Pure functions.

A stored enrollment has the service API's shape plus, for X.509, each certificate as it was
given; `view` drops the certificates (DPS answers with their `info` only), and a write that
sends back such a view keeps the stored certificate with the same thumbprint.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from typing import Any

from cryptography import x509

from ...certs.pki import thumbprints
from ...errors import CertificateError
from ..protocol.dps import check_registration_id, dps_error, new_etag, timestamp
from ..protocol.sas import key_problem, new_key
from ..protocol.x509 import decode_certificate

ATTESTATION_TYPES = ("tpm", "x509", "symmetricKey")
ALLOCATION_POLICIES = ("hashed", "geoLatency", "static", "custom")
_DEVICE_ID = re.compile(r"[A-Za-z0-9\-.%_#*?!(),:=@$']{1,128}")
_GROUP_ID = re.compile(r"[A-Za-z0-9\-._:]{1,128}")


def check_group_id(value: object) -> str:
    if not isinstance(value, str) or not _GROUP_ID.fullmatch(value):
        raise dps_error("ArgumentInvalid", f"enrollment group id {value!r} is invalid: up to 128 letters, digits or - . _ :")
    return value


# ---- documents --------------------------------------------------------------------------------


def individual(
    body: dict, registration_id: str, existing: dict | None, linked_hubs: list[str], now: dt.datetime | None = None
) -> dict:
    """The stored individual enrollment for a PUT of `body` at `now` (validated, keys generated)."""
    check_registration_id(registration_id)
    claimed = body.get("registrationId", registration_id)
    if not isinstance(claimed, str) or claimed.lower() != registration_id.lower():
        raise dps_error("ArgumentInvalid", f"registrationId in the body ({claimed!r}) is not {registration_id!r}")
    device_id = _optional(body, "deviceId", str)
    if device_id is not None and not _DEVICE_ID.fullmatch(device_id):
        raise dps_error("ArgumentInvalid", f"deviceId {device_id!r} is not a valid IoT Hub device id")
    doc: dict[str, Any] = {"registrationId": registration_id}
    if device_id:
        doc["deviceId"] = device_id
    doc["attestation"] = _attestation(body.get("attestation"), existing, group=False)
    doc.update(_common(body, existing, linked_hubs, now))
    return doc


def group(body: dict, group_id: str, existing: dict | None, linked_hubs: list[str], now: dt.datetime | None = None) -> dict:
    """The stored enrollment group for a PUT of `body` at `now`."""
    check_group_id(group_id)
    claimed = body.get("enrollmentGroupId", group_id)
    if claimed != group_id:
        raise dps_error("ArgumentInvalid", f"enrollmentGroupId in the body ({claimed!r}) is not {group_id!r}")
    doc: dict = {"enrollmentGroupId": group_id}
    doc["attestation"] = _attestation(body.get("attestation"), existing, group=True)
    doc.update(_common(body, existing, linked_hubs, now))
    return doc


def view(doc: dict) -> dict:
    """What the service API shows: certificates by their info only."""
    out = copy.deepcopy(doc)
    x = out.get("attestation", {}).get("x509") or {}
    for slot in ("clientCertificates", "signingCertificates"):
        for cert in (x.get(slot) or {}).values():
            if isinstance(cert, dict):
                cert.pop("certificate", None)
    return out


def attestation_view(doc: dict) -> dict:
    return view(doc)["attestation"]


def _common(body: dict, existing: dict | None, linked_hubs: list[str], now: dt.datetime | None) -> dict:
    status = body.get("provisioningStatus", "enabled")
    if status not in ("enabled", "disabled"):
        raise dps_error("ArgumentInvalid", f"provisioningStatus must be 'enabled' or 'disabled', not {status!r}")
    reprovision = _optional(body, "reprovisionPolicy", dict) or {}
    policy = {
        "updateHubAssignment": _optional(reprovision, "updateHubAssignment", bool),
        "migrateDeviceData": _optional(reprovision, "migrateDeviceData", bool),
    }
    capabilities = _optional(body, "capabilities", dict) or {}
    allocation = body.get("allocationPolicy")
    if allocation is not None and allocation not in ALLOCATION_POLICIES:
        raise dps_error("ArgumentInvalid", f"allocationPolicy must be one of {', '.join(ALLOCATION_POLICIES)}, not {allocation!r}")
    hubs = _optional(body, "iotHubs", list)
    if hubs is not None:
        hubs = [_linked(h, linked_hubs, "iotHubs") for h in hubs]
    hub = _optional(body, "iotHubHostName", str)
    if hub:
        hub = _linked(hub, linked_hubs, "iotHubHostName")
    custom = _optional(body, "customAllocationDefinition", dict)
    if allocation == "custom":
        if not custom or not isinstance(custom.get("webhookUrl"), str) or not isinstance(custom.get("apiVersion"), str):
            raise dps_error(
                "ArgumentInvalid", "allocationPolicy 'custom' needs customAllocationDefinition with webhookUrl and apiVersion"
            )
    updated = timestamp(now)
    out: dict = {
        "capabilities": {"iotEdge": bool(_optional(capabilities, "iotEdge", bool))},
        "etag": new_etag(),
        "provisioningStatus": status,
        "reprovisionPolicy": {k: True if v is None else v for k, v in policy.items()},
        "createdDateTimeUtc": existing["createdDateTimeUtc"] if existing else updated,
        "lastUpdatedDateTimeUtc": updated,
    }
    if hub:
        out["iotHubHostName"] = hub
    if allocation:
        out["allocationPolicy"] = allocation
    if hubs is not None:
        out["iotHubs"] = hubs
    if custom is not None:
        out["customAllocationDefinition"] = {"webhookUrl": custom.get("webhookUrl"), "apiVersion": custom.get("apiVersion")}
    twin = initial_twin(body.get("initialTwin"))
    if twin is not None:
        out["initialTwin"] = twin
    info = _optional(body, "optionalDeviceInformation", dict)
    if info is not None:
        out["optionalDeviceInformation"] = info
    return out


def _linked(name: object, linked_hubs: list[str], field: str) -> str:
    for hub in linked_hubs:
        if isinstance(name, str) and name.lower() == hub.lower():
            return hub
    raise dps_error("ArgumentInvalid", f"{field}: {name!r} is not a linked IoT hub (linked: {', '.join(linked_hubs)})")


def initial_twin(value: object) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise dps_error("ArgumentInvalid", "initialTwin must be a JSON object")
    tags = value.get("tags")
    props = value.get("properties") or {}
    if tags is not None and not isinstance(tags, dict) or not isinstance(props, dict):
        raise dps_error("ArgumentInvalid", "initialTwin.tags and initialTwin.properties must be JSON objects")
    desired = props.get("desired")
    if desired is not None and not isinstance(desired, dict):
        raise dps_error("ArgumentInvalid", "initialTwin.properties.desired must be a JSON object")
    if "reported" in props:
        raise dps_error("ArgumentInvalid", "initialTwin cannot set reported properties")
    return {"tags": tags or {}, "properties": {"desired": desired or {}}}


# ---- attestation mechanisms -------------------------------------------------------------------


def _attestation(value: object, existing: dict | None, *, group: bool) -> dict:
    if not isinstance(value, dict):
        raise dps_error("ArgumentInvalid", "attestation is required: {\"type\": \"symmetricKey\" | \"x509\" | \"tpm\", …}")
    kind = value.get("type")
    if kind not in ATTESTATION_TYPES:
        raise dps_error("ArgumentInvalid", f"attestation type must be one of {', '.join(ATTESTATION_TYPES)}, not {kind!r}")
    old = (existing or {}).get("attestation") or {}
    if kind == "symmetricKey":
        keys = _optional(value, "symmetricKey", dict) or {}
        out = {}
        for name in ("primaryKey", "secondaryKey"):
            key = _optional(keys, name, str) or new_key()
            problem = key_problem(key)
            if problem:
                raise dps_error("ArgumentInvalid", f"attestation.symmetricKey.{name} {problem}")
            out[name] = key
        return {"type": kind, "symmetricKey": out}
    if kind == "tpm":
        tpm = _optional(value, "tpm", dict) or {}
        if not isinstance(tpm.get("endorsementKey"), str) or not tpm["endorsementKey"]:
            raise dps_error("ArgumentInvalid", "a tpm attestation needs tpm.endorsementKey")
        return {"type": kind, "tpm": {k: tpm[k] for k in ("endorsementKey", "storageRootKey") if tpm.get(k)}}
    x = _optional(value, "x509", dict) or {}
    old_x = old.get("x509") or {}
    refs = _optional(x, "caReferences", dict)
    if refs:
        if not group:
            raise dps_error(
                "ArgumentInvalid", "x509.caReferences is not supported by the emulator for individual enrollments; use x509.clientCertificates"
            )
        if x.get("signingCertificates"):
            raise dps_error("ArgumentInvalid", "x509 takes either signingCertificates or caReferences, not both")
        names = {}
        for name in ("primary", "secondary"):
            ref = refs.get(name)
            if ref is not None and (not isinstance(ref, str) or not ref):
                raise dps_error("ArgumentInvalid", f"x509.caReferences.{name} must be the name of a CA certificate uploaded to DPS")
            if ref:
                names[name] = ref
        if "primary" not in names:
            raise dps_error("ArgumentInvalid", "x509.caReferences needs primary (the name of a CA certificate uploaded to DPS)")
        return {"type": kind, "x509": {"caReferences": names}}
    slot = "signingCertificates" if group else "clientCertificates"
    other = "clientCertificates" if group else "signingCertificates"
    if x.get(other):
        what = "enrollment groups" if group else "individual enrollments"
        raise dps_error("ArgumentInvalid", f"x509.{other} is not supported by the emulator for {what}; use x509.{slot}")
    certs = _optional(x, slot, dict) or {}
    out_certs = {}
    for name in ("primary", "secondary"):
        entry = certs.get(name)
        if entry is None:
            continue
        out_certs[name] = _certificate(entry, (old_x.get(slot) or {}).get(name), f"x509.{slot}.{name}")
    if "primary" not in out_certs:
        raise dps_error("ArgumentInvalid", f"an x509 attestation needs x509.{slot}.primary.certificate")
    return {"type": kind, "x509": {slot: out_certs}}


def _certificate(entry: object, old: dict | None, where: str) -> dict:
    if not isinstance(entry, dict):
        raise dps_error("ArgumentInvalid", f"{where} must be a JSON object")
    text = entry.get("certificate")
    if text is None:
        # A view sent back: keep the stored certificate it describes.
        sha256 = ((entry.get("info") or {}).get("sha256Thumbprint") or "").upper()
        if old and sha256 and old["info"]["sha256Thumbprint"] == sha256:
            return copy.deepcopy(old)
        raise dps_error("ArgumentInvalid", f"{where}.certificate is required (PEM, base64 PEM or base64 DER)")
    if not isinstance(text, str):
        raise dps_error("ArgumentInvalid", f"{where}.certificate must be a string")
    der = parse_certificate(text, where)
    return {"certificate": text, "info": certificate_info(der)}


def parse_certificate(text: str, where: str = "certificate") -> bytes:
    """DER bytes of a certificate given as PEM, base64 of PEM or base64 DER (see x509.decode_certificate)."""
    try:
        return decode_certificate(text)
    except CertificateError:
        raise dps_error("ArgumentInvalid", f"{where} is not a PEM, base64 PEM or base64 DER certificate") from None


def certificate_info(der: bytes) -> dict:
    cert = x509.load_der_x509_certificate(der)
    sha1, sha256 = thumbprints(der)
    return {
        "subjectName": cert.subject.rfc4514_string(),
        "sha1Thumbprint": sha1,
        "sha256Thumbprint": sha256,
        "issuerName": cert.issuer.rfc4514_string(),
        "notBeforeUtc": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "notAfterUtc": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "serialNumber": format(cert.serial_number, "X"),
        "version": cert.version.value + 1,
    }


def stored_certificates(doc: dict) -> list[bytes]:
    """DER of the primary and secondary certificate of an X.509 enrollment, in that order."""
    x = doc.get("attestation", {}).get("x509") or {}
    slot = x.get("clientCertificates") or x.get("signingCertificates") or {}  # none with caReferences
    return [parse_certificate(slot[n]["certificate"]) for n in ("primary", "secondary") if n in slot]


def _optional(body: dict, name: str, kind: type) -> Any:
    value = body.get(name)
    if value is None or isinstance(value, kind):
        return value
    names = {str: "a string", bool: "true or false", dict: "a JSON object", list: "a JSON array"}
    raise dps_error("ArgumentInvalid", f"{name} must be {names.get(kind, kind.__name__)}, not {value!r}")
