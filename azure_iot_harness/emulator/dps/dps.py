"""The Device Provisioning Service: attestation, registration operations, assignment, enrollments.

The MQTT session (session.py) and the device REST API (rest.py) are thin adapters over
`authenticate`, `register`, `poll` and `lookup`, which answer with `protocol.Answer`s. Assignment
creates or updates the device in the emulator's hub (the one linked hub) and applies the
enrollment's initial twin. Operations live in memory only, as they do in DPS for a while.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...certs.pki import thumbprints
from ...config import (
    WELL_KNOWN_SYMMETRIC_GROUP,
    WELL_KNOWN_SYMMETRIC_GROUP_KEYS,
    WELL_KNOWN_X509_GROUP,
    DpsSettings,
    Policy,
)
from ...errors import ConnackCode, ConnectRefused, ProvisioningError, ServiceError
from ..ca_certificates import CaCertificates
from ..clock import SYSTEM_CLOCK, Clock
from ..faults import FaultBook
from ..faults import kinds as fault_kinds
from ..faults.answers import dps_answer
from ..hub.registry import Registry, etag_matches
from ..hub.twins import Twins
from ..mqtt.codec import Connect
from ..mqtt.connection import MqttConnection
from ..protocol import dps as p
from ..protocol.topics import DpsUsername
from ..store import Store
from ..trace import ConnTrace
from . import allocation, attestation, enrollments, webhook
from .attestation import Attestation
from .session import DpsSession
from .state import GROUP, INDIVIDUAL, DpsState, enrollment_of

log = logging.getLogger("azure_iot_harness.dps")

MAX_OPERATIONS = 10_000  # finished operations kept for late polls, oldest forgotten first


@dataclass
class Operation:
    registration_key: str  # lower-case registration id
    pending: int  # answers still to say "assigning"
    state: dict  # the registration state it ends with


class Dps:
    def __init__(
        self,
        settings: DpsSettings,
        store: Store,
        clock: Clock = SYSTEM_CLOCK,
        *,
        registry: Registry,
        twins: Twins,
        device_ca_pem: bytes,
        faults: FaultBook | None = None,
    ) -> None:
        """DPS assigns devices to the linked hub through its `registry` and `twins`;
        `device_ca_pem` signs the well-known X.509 group's devices; `faults`: the faults a test
        asked for (dps-throttle, dps-error, dps-assign-hub fire at register)."""
        self.faults = faults
        self.id_scope = settings.id_scope
        self.host = settings.host
        self.linked_hubs = [settings.host]
        self.assigning_polls = settings.assigning_polls
        self.retry_after = settings.retry_after
        self.per_minute = settings.registrations_per_minute
        self.policies: tuple[Policy, ...] = settings.policies
        self.clock = clock
        self.registry = registry
        self.twins = twins
        self.state = DpsState(store)
        self._device_ca_pem = device_ca_pem
        self.cas = CaCertificates(store, "dps", clock)  # CA certificates uploaded to DPS (caReferences)
        self._operations: collections.OrderedDict[str, Operation] = collections.OrderedDict()
        self._recent: collections.deque[float] = collections.deque()
        # Enrollment writes check a precondition, then await the store; an assignment reads, then
        # writes its registration record (and may wait for a webhook): both are serialised, the
        # latter per registration id.
        self._lock = asyncio.Lock()
        self._registration_locks: dict[str, asyncio.Lock] = {}
        # One connection per client id, as MQTT requires: a new one closes the old one.
        self.connections: dict[str, MqttConnection] = {}

    async def start(self) -> None:
        """Read the state kept in the store (which must have started) and create the
        well-known enrollment groups that are missing."""
        await self.state.load()
        await self.cas.load()
        await self.seed_well_known()

    async def stop(self) -> None:
        """Nothing to release: registrations still being answered run to their end (see
        DpsSession.on_closed), and the connections close with the hub's listeners."""

    async def seed_well_known(self) -> None:
        """Create the published development enrollment groups when they are missing."""
        if self.state.enrollment(GROUP, WELL_KNOWN_SYMMETRIC_GROUP) is None:
            keys = dict(zip(("primaryKey", "secondaryKey"), WELL_KNOWN_SYMMETRIC_GROUP_KEYS))
            body = {"attestation": {"type": "symmetricKey", "symmetricKey": keys}}
            await self.put_enrollment(GROUP, WELL_KNOWN_SYMMETRIC_GROUP, body, if_match=None)
        if self.state.enrollment(GROUP, WELL_KNOWN_X509_GROUP) is None:
            ca = {"primary": {"certificate": self._device_ca_pem.decode()}}
            body = {"attestation": {"type": "x509", "x509": {"signingCertificates": ca}}}
            await self.put_enrollment(GROUP, WELL_KNOWN_X509_GROUP, body, if_match=None)

    # ---- the device side ------------------------------------------------------------------

    async def connect(self, conn: MqttConnection, connect: Connect, username: DpsUsername) -> tuple[DpsSession, bool]:
        """An MQTT registration connection: refused with CONNACK 2 or 5, as DPS does."""
        registration_id = username.registration_id
        if connect.client_id != registration_id:
            raise ConnectRefused(
                ConnackCode.IDENTIFIER_REJECTED, f"client id {connect.client_id!r} is not the registration id {registration_id!r}"
            )
        try:
            p.check_registration_id(registration_id)
        except ProvisioningError as exc:
            raise ConnectRefused(ConnackCode.IDENTIFIER_REJECTED, exc.message) from None
        password = connect.password or None  # X.509 devices send none or an empty one
        try:
            self.authenticate(username.id_scope, registration_id, password=password, chain=conn.peer_chain)
        except ProvisioningError as exc:
            raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, exc.message) from None
        log.info("registration %s connected from %s (%s)", registration_id, conn.peer, "SAS" if password else "X.509")
        previous = self.connections.get(registration_id)
        if previous is not None and previous is not conn:
            previous.close("replaced by a new connection with the same client id", graceful=True)
        self.connections[registration_id] = conn
        return DpsSession(self, conn, username.id_scope, registration_id, password), False

    def authenticate(self, scope: str, registration_id: str, *, password: str | None, chain: Sequence[bytes]) -> Attestation:
        """`chain`: the certificates the device sent in the TLS handshake, leaf first (or none)."""
        if scope.lower() != self.id_scope.lower():
            raise p.dps_error("ScopeNotFound", f"no Device Provisioning Service has ID scope {scope!r} (this one: {self.id_scope})")
        p.check_registration_id(registration_id)
        individual = self.state.enrollment(INDIVIDUAL, registration_id)
        groups = self.state.enrollments(GROUP)
        if password:
            return attestation.by_sas(password, scope, registration_id, individual, groups, self.clock.now())
        if chain:
            return attestation.by_certificate(chain, registration_id, individual, groups, self.cas.trust(), self.clock.now())
        raise p.dps_error("Unauthorized", f"registration {registration_id}: neither a SAS token nor a client certificate")

    async def register(self, att: Attestation, body: bytes, *, trace: ConnTrace | None = None) -> p.Answer:
        """`trace`: the MQTT connection's trace record (a fault that fires is recorded there)."""
        fault = None
        if self.faults is not None and self.faults.armed:
            fault = self.faults.take(fault_kinds.DPS_REGISTER, att.registration_id, None, trace)
            if fault is not None and fault.kind != "dps-assign-hub":
                return dps_answer(fault, self.clock.now())
        throttled = self._throttle()
        if throttled is not None:
            return throttled
        request = p.parse_registration(body, att.registration_id)
        key = att.registration_id.lower()
        lock = self._registration_locks.setdefault(key, asyncio.Lock())
        async with lock:
            state = await self._assign(att, request.payload, assign_to=fault.params["hostName"] if fault is not None else None)
        operation_id = p.new_operation_id()
        if self.assigning_polls == 0:
            return p.Answer(200, p.finished(operation_id, state))
        self._remember(operation_id, Operation(att.registration_id.lower(), self.assigning_polls - 1, state))
        return p.Answer(202, p.assigning(operation_id), self.retry_after)

    def poll(self, registration_id: str, operation_id: str) -> p.Answer:
        op = self._operations.get(operation_id)
        if op is None or op.registration_key != registration_id.lower():
            raise p.dps_error("OperationNotFound", f"registration {registration_id} has no operation {operation_id!r}")
        if op.pending > 0:
            op.pending -= 1
            return p.Answer(202, p.assigning(operation_id, registration_id), self.retry_after)
        return p.Answer(200, p.finished(operation_id, op.state))

    def lookup(self, registration_id: str) -> p.Answer:
        record = self.state.registration(registration_id)
        if record is None:
            raise p.dps_error("RegistrationNotFound", f"registration {registration_id} has never registered")
        return p.Answer(200, record["state"])

    def _throttle(self) -> p.Answer | None:
        if not self.per_minute:
            return None
        now = self.clock.monotonic()
        while self._recent and now - self._recent[0] >= 60:
            self._recent.popleft()
        if len(self._recent) >= self.per_minute:
            wait = max(1, math.ceil(60 - (now - self._recent[0])))
            err = p.dps_error("Throttled", f"more than {self.per_minute} registrations a minute (dps_registrations_per_minute)")
            return p.Answer.error(err, wait, self.clock.now())
        self._recent.append(now)
        return None

    def _remember(self, operation_id: str, op: Operation) -> None:
        self._operations[operation_id] = op
        while len(self._operations) > MAX_OPERATIONS:
            self._operations.popitem(last=False)

    # ---- assignment -------------------------------------------------------------------------

    async def _assign(self, att: Attestation, payload: Any, *, assign_to: str | None = None) -> dict:
        """Assign the device to a hub (or fail, or find it disabled) and record the outcome.
        `assign_to`: the hub host name to answer (a dps-assign-hub fault: another host name of
        the emulator's hub)."""
        registration_id = att.registration_id
        record = self.state.registration(registration_id)
        previous = record["state"] if record else None
        now = self.clock.now()
        created = previous["createdDateTimeUtc"] if previous else p.timestamp(now)
        outcome: dict
        device: dict | None = None  # the device to write with the registration record
        try:
            if att.enrollment.get("provisioningStatus") == "disabled":
                what = f"enrollment group {att.group_id}" if att.group_id else "its individual enrollment"
                log.info("registration %s: %s is disabled", registration_id, what)
                outcome = {"status": p.DISABLED}
            else:
                outcome, device = await self._assign_to_hub(att, previous, record, payload)
                if assign_to is not None and outcome.get("status") == p.ASSIGNED:
                    outcome["assignedHub"] = assign_to
        except ServiceError as exc:
            outcome = _failed(registration_id, exc)
        state = p.registration_state(registration_id, created, outcome, self._attestation_block(att), now)
        initial_hub = (record or {}).get("initialHub") or state.get("assignedHub")
        registration = {"state": state, "initialHub": initial_hub}
        if device is not None:  # one commit for the device and its registration record, not two in a row
            try:
                await self.registry.put_device(device, if_match="*", also=self.state.registration_write(registration))
            except ServiceError as exc:  # neither was stored: the registration failed
                state = p.registration_state(registration_id, created, _failed(registration_id, exc), self._attestation_block(att), now)
                registration = {"state": state, "initialHub": (record or {}).get("initialHub")}
            else:
                self.state.remember_registration(registration)
                _log_assigned(registration_id, outcome)
                return state
        await self.state.put_registration(registration)
        if device is None and outcome.get("status") == p.ASSIGNED:
            _log_assigned(registration_id, outcome)
        return state

    async def _assign_to_hub(
        self, att: Attestation, previous: dict | None, record: dict | None, payload: Any
    ) -> tuple[dict, dict | None]:
        """The outcome, and the device body still to write (None: nothing to write, or written
        already because an initial twin had to follow it)."""
        enrollment = att.enrollment
        decision = None
        if enrollment.get("allocationPolicy") == "custom":
            url = enrollment["customAllocationDefinition"]["webhookUrl"]
            answer = await webhook.call(url, webhook.request_body(att, payload, previous, self.linked_hubs))
            decision = webhook.decision(answer, self.linked_hubs)
            hub = decision.hub
        else:
            hub = allocation.choose_hub(enrollment, self.linked_hubs, att.registration_id)
        plan = allocation.plan(previous, enrollment, hub, (record or {}).get("initialHub"))
        if plan.unchanged and previous is not None:
            device_id = previous["deviceId"]
        else:
            device_id = enrollment.get("deviceId") or att.registration_id
        twin = None
        if plan.apply_initial_twin:
            twin = decision.initial_twin if decision and decision.initial_twin else enrollment.get("initialTwin")
        if plan.hub.lower() != self.host.lower():  # only reachable through a stale record
            raise p.dps_error("NoHubLinked", f"IoT hub {plan.hub} is not linked to this Device Provisioning Service")
        device = None
        if not plan.unchanged or self.registry.get(device_id) is None:
            body = {
                "deviceId": device_id,
                "authentication": self._hub_authentication(att),
                "capabilities": {"iotEdge": bool(enrollment.get("capabilities", {}).get("iotEdge"))},
            }
            device = _keeping_what_the_hub_owns(body, self.registry.get(device_id), previous)
        if twin:  # the twin needs its device first: written now, the registration record after
            if device is not None:
                await self.registry.put_device(device, if_match="*")
                device = None
            body = {"tags": twin["tags"], "properties": {"desired": twin["properties"]["desired"]}}
            await self.twins.service_update((device_id, None), body, if_match=None, replace=True)
        outcome = {"status": p.ASSIGNED, "assignedHub": plan.hub, "deviceId": device_id, "substatus": plan.substatus}
        if decision is not None:
            outcome["payload"] = decision.payload
        return outcome, device

    @staticmethod
    def _hub_authentication(att: Attestation) -> dict:
        """How the hub knows the device. An X.509 device is `selfSigned` whatever its enrollment,
        as DPS does it (even with its CA uploaded and verified on the hub: azure-docs#108289,
        azure-iot-sdk-csharp#3360; the Python SDK's end-to-end tests assert it for a group signed
        by an intermediate): by its enrollment's certificates when individual, else by the
        device's own; a missing secondary repeats the primary."""
        if att.kind == "symmetricKey":
            assert att.keys is not None
            return {"type": "sas", "symmetricKey": {"primaryKey": att.keys[0], "secondaryKey": att.keys[1]}}
        certs = enrollments.stored_certificates(att.enrollment) if att.group_id is None else [att.certificate]
        prints = [thumbprints(c)[1] for c in certs if c]
        return {
            "type": "selfSigned",
            "x509Thumbprint": {"primaryThumbprint": prints[0], "secondaryThumbprint": prints[1] if len(prints) > 1 else prints[0]},
        }

    @staticmethod
    def _attestation_block(att: Attestation) -> dict:
        if att.kind == "symmetricKey":
            return {"symmetricKey": {"enrollmentGroupId": att.group_id}} if att.group_id else {"symmetricKey": {}}
        assert att.certificate is not None
        block: dict = {"certificateInfo": enrollments.certificate_info(att.certificate)}
        if att.group_id:
            block["enrollmentGroupId"] = att.group_id
        if att.signer is not None:
            block["signingCertificateInfo"] = enrollments.certificate_info(att.signer)
        return {"x509": block}

    # ---- the service API --------------------------------------------------------------------

    def get_enrollment(self, kind: str, key: str) -> dict:
        doc = self.state.enrollment(kind, key)
        if doc is None:
            raise self._not_found(kind, key)
        return enrollments.view(doc)

    def list_enrollments(self, kind: str) -> list[dict]:
        return [enrollments.view(d) for d in self.state.enrollments(kind)]

    async def put_enrollment(self, kind: str, key: str, body: dict, *, if_match: str | None) -> dict:
        async with self._lock:
            existing = self.state.enrollment(kind, key)
            self._precondition(kind, key, existing, if_match, creating=True)
            if kind == INDIVIDUAL:
                doc = enrollments.individual(body, key, existing, self.linked_hubs, self.clock.now())
            else:
                doc = enrollments.group(body, key, existing, self.linked_hubs, self.clock.now())
            await self.state.put_enrollment(kind, key, doc)
        return enrollments.view(doc)

    async def delete_enrollment(self, kind: str, key: str, *, if_match: str | None) -> None:
        async with self._lock:
            existing = self.state.enrollment(kind, key)
            if existing is None:
                raise self._not_found(kind, key)
            self._precondition(kind, key, existing, if_match, creating=False)
            await self.state.delete_enrollment(kind, key)

    def get_registration(self, registration_id: str) -> dict:
        record = self.state.registration(registration_id)
        if record is None:
            raise p.dps_error("RegistrationNotFound", f"no registration record for {registration_id}")
        return record["state"]

    def group_registrations(self, group_id: str) -> list[dict]:
        if self.state.enrollment(GROUP, group_id) is None:
            raise self._not_found(GROUP, group_id)
        return [r["state"] for r in self.state.registrations() if enrollment_of(r["state"]) == (GROUP, group_id.lower())]

    async def delete_registration(self, registration_id: str, *, if_match: str | None) -> None:
        async with self._lock:
            state = self.get_registration(registration_id)
            if if_match is not None and not etag_matches(if_match, state["etag"]):
                raise p.dps_error("PreconditionFailed", f"etag {if_match} does not match {state['etag']}")
            await self.state.delete_registration(registration_id)

    @staticmethod
    def _not_found(kind: str, key: str) -> ProvisioningError:
        if kind == INDIVIDUAL:
            return p.dps_error("EnrollmentNotFound", f"no individual enrollment for registration {key}")
        return p.dps_error("EnrollmentGroupNotFound", f"no enrollment group {key}")

    @staticmethod
    def _precondition(kind: str, key: str, existing: dict | None, if_match: str | None, *, creating: bool) -> None:
        what = f"individual enrollment {key}" if kind == INDIVIDUAL else f"enrollment group {key}"
        if existing is None:
            if if_match is not None and if_match.strip().strip('"') != "*":
                raise Dps._not_found(kind, key)
            return
        if if_match is None:
            if creating:
                raise p.dps_error(
                    "EnrollmentExists" if kind == INDIVIDUAL else "EnrollmentGroupExists",
                    f"{what} already exists; send its etag in If-Match to update it",
                )
            return
        if not etag_matches(if_match, existing["etag"]):
            raise p.dps_error("PreconditionFailed", f"etag {if_match} does not match {existing['etag']} of {what}")


# What a registration leaves as it is on an identity that already exists in the hub: DPS writes
# the device state it owns (credentials, capabilities, the initial twin), not the hub's own
# lifecycle and topology fields. An IoT Edge device also stays one: its scope, and with it its
# children, depend on it.
_HUB_OWNED = ("status", "statusReason", "deviceScope", "parentScopes")


def _keeping_what_the_hub_owns(body: dict, existing: dict | None, previous: dict | None) -> dict:
    """The hub identity a registration writes, over `existing` (None: a new identity);
    `previous` is this registration's last state (None: DPS never assigned it)."""
    if existing is None:
        return body
    kept = {k: existing[k] for k in _HUB_OWNED if existing.get(k) is not None}
    if (existing.get("capabilities") or {}).get("iotEdge"):
        kept["capabilities"] = {"iotEdge": True}
    if previous is None or previous.get("deviceId") != body["deviceId"]:
        changed = [f for f in ("authentication", "capabilities") if existing.get(f) != {**body, **kept}[f]]
        log.warning(
            "registration assigns device %s, which exists in the hub without a DPS registration: %s replaced "
            "from the enrollment, %s kept",
            body["deviceId"],
            " and ".join(changed) or "nothing",
            ", ".join(kept) or "nothing else",
        )
    return {**body, **kept}


def _failed(registration_id: str, exc: ServiceError) -> dict:
    code = exc.code if isinstance(exc, ProvisioningError) else exc.status * 1000 + 1
    log.warning("registration %s failed: %s", registration_id, exc.message)
    return {"status": p.FAILED, "errorCode": code, "errorMessage": exc.message}


def _log_assigned(registration_id: str, outcome: dict) -> None:
    log.info(
        "registration %s assigned to %s as device %s (%s)", registration_id, outcome["assignedHub"], outcome["deviceId"], outcome["substatus"]
    )
