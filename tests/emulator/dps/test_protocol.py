"""The sans-IO DPS code: topics, registration ids, request bodies, answers, allocation, reprovisioning."""

from __future__ import annotations

import base64
import json
import re

import pytest

from azure_iot_harness.emulator.dps import allocation
from azure_iot_harness.emulator.protocol import dps as p
from azure_iot_harness.errors import ProtocolViolation, ProvisioningError


def _code(exc_info: pytest.ExceptionInfo[ProvisioningError]) -> tuple[int, int]:
    return exc_info.value.status, exc_info.value.code


# ---- topics ------------------------------------------------------------------------------------


def test_register_and_poll_topics():
    assert p.parse_request_topic("$dps/registrations/PUT/iotdps-register/?$rid=1") == p.Request("register", "1")
    assert p.parse_request_topic("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=7&operationId=5.a.b") == p.Request(
        "poll", "7", "5.a.b"
    )


@pytest.mark.parametrize(
    "topic",
    [
        "$dps/registrations/PUT/iotdps-register/",  # no query, no $rid
        "$dps/registrations/PUT/iotdps-register/?rid=1",
        "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1",  # no operationId
        "$dps/registrations/res/200/?$rid=1",
        "devices/dev1/messages/events/",
        "$iothub/twin/GET/?$rid=1",
    ],
)
def test_other_topics_close_the_connection(topic):
    with pytest.raises(ProtocolViolation):
        p.parse_request_topic(topic)


def test_response_topics_carry_rid_and_retry_after_only():
    assert p.response_topic(202, "3", 2) == "$dps/registrations/res/202/?$rid=3&retry-after=2"
    assert p.response_topic(200, "3") == "$dps/registrations/res/200/?$rid=3"
    # The Python SDK splits on '$' and reads the rest as its query: no other '$' parameter.
    assert p.response_topic(429, "x", 5).split("$")[2] == "rid=x&retry-after=5"


# ---- registration ids and bodies ----------------------------------------------------------------


@pytest.mark.parametrize("rid", ["dev1", "a", "Dev-1.x_y:z", "ends-with-dash-", "9" * 128])
def test_valid_registration_ids(rid):
    assert p.check_registration_id(rid) == rid


@pytest.mark.parametrize("rid", ["", "dev 1", "dev/1", "ends.", "ends_", "ends:", "ü", "9" * 129, None, 5])
def test_invalid_registration_ids(rid):
    with pytest.raises(ProvisioningError) as exc:
        p.check_registration_id(rid)
    assert _code(exc) == (400, 400004)


def test_registration_body():
    reg = p.parse_registration(b'{"payload": null, "registrationId": "dev1"}', "dev1")
    assert reg == p.DeviceRegistration("dev1", None)
    assert p.parse_registration(b'{"registrationId": "DEV1", "payload": {"a": 1}}', "dev1").payload == {"a": 1}


@pytest.mark.parametrize("body", [b"", b" \r\n", b"{}", b'{"payload": null}', b'{"registrationId": null}', b'{"registrationId": "dev1"}'])
def test_registration_body_may_leave_the_registration_id_to_the_credentials(body):
    assert p.parse_registration(body, "dev1") == p.DeviceRegistration("dev1", None)
    assert p.parse_registration(b'{"payload": {"a": 1}}', "dev1") == p.DeviceRegistration("dev1", {"a": 1})


@pytest.mark.parametrize(
    "body, expected",
    [
        (b"{not json", (400, 400006)),
        (b"[]", (400, 400004)),
        (b'{"registrationId": 5}', (400, 400004)),
        (b'{"registrationId": "other"}', (400, 400004)),
        (b'{"registrationId": "bad id"}', (400, 400004)),
        (b'{"registrationId": "dev1", "tpm": {"endorsementKey": "AA=="}}', (400, 400004)),
    ],
)
def test_bad_registration_bodies(body, expected):
    with pytest.raises(ProvisioningError) as exc:
        p.parse_registration(body, "dev1")
    assert _code(exc) == expected


def test_tpm_is_refused_as_not_supported():
    with pytest.raises(ProvisioningError, match="not supported by the emulator"):
        p.parse_registration(b'{"registrationId": "dev1", "tpm": {"endorsementKey": "AA=="}}', "dev1")


# ---- answers -----------------------------------------------------------------------------------


def test_error_body_shape():
    body = p.error_body(p.dps_error("Unauthorized", "nope"))
    assert set(body) == {"errorCode", "trackingId", "message", "timestampUtc"}
    assert body["errorCode"] == 401002 and body["message"] == "nope"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", body["timestampUtc"])


def test_every_error_code_starts_with_its_status():
    for name, (status, code) in p.CATALOGUE.items():
        assert len(str(code)) == 6 and str(code).startswith(str(status)), name


def test_operation_ids_and_etags():
    assert re.fullmatch(r"5\.[0-9a-f]{16}\.[0-9a-f-]{36}", p.new_operation_id())
    assert re.fullmatch(r'"[0-9a-f-]{36}"', base64.b64decode(p.new_etag()).decode())


def test_registration_state_in_field_order():
    outcome = {"status": "assigned", "substatus": "initialAssignment", "assignedHub": "h", "deviceId": "d", "payload": {"x": 1}}
    state = p.registration_state("d", "2020-01-01T00:00:00.0000000Z", outcome, {"symmetricKey": {}})
    assert list(state)[:6] == ["registrationId", "createdDateTimeUtc", "assignedHub", "deviceId", "status", "substatus"]
    assert state["payload"] == {"x": 1} and state["etag"]
    assert json.loads(json.dumps(p.finished("op", state)))["registrationState"]["deviceId"] == "d"


# ---- allocation and reprovisioning ----------------------------------------------------------------

HUBS = ["hub-a", "hub-b", "hub-c"]


def test_static_allocation_takes_the_enrollment_hub():
    assert allocation.choose_hub({"allocationPolicy": "static", "iotHubHostName": "hub-b"}, HUBS, "d") == "hub-b"
    assert allocation.choose_hub({"allocationPolicy": "static", "iotHubs": ["hub-c"]}, HUBS, "d") == "hub-c"


def test_hashed_allocation_is_stable_and_spreads():
    chosen = [allocation.choose_hub({}, HUBS, f"dev{i}") for i in range(300)]
    assert chosen == [allocation.choose_hub({"allocationPolicy": "hashed"}, list(reversed(HUBS)), f"DEV{i}") for i in range(300)]
    counts = {h: chosen.count(h) for h in HUBS}
    assert all(60 < n < 140 for n in counts.values()), counts
    assert {allocation.choose_hub({"iotHubs": ["hub-a"]}, HUBS, f"d{i}") for i in range(20)} == {"hub-a"}


def test_no_linked_hub():
    with pytest.raises(ProvisioningError) as exc:
        allocation.choose_hub({}, [], "d")
    assert _code(exc) == (400, 400208)


def _assigned(hub: str, substatus: str = "initialAssignment") -> dict:
    return {"status": "assigned", "assignedHub": hub, "deviceId": "d", "substatus": substatus}


def test_first_registration_is_an_initial_assignment():
    plan = allocation.plan(None, {}, "hub-a", None)
    assert plan == allocation.Plan("hub-a", "initialAssignment", True)
    assert allocation.plan({"status": "failed"}, {}, "hub-a", None).substatus == "initialAssignment"


@pytest.mark.parametrize(
    "policy, chosen, expected",
    [
        ({"updateHubAssignment": False, "migrateDeviceData": True}, "hub-b", ("hub-a", "initialAssignment", False, True)),
        ({"updateHubAssignment": True, "migrateDeviceData": True}, "hub-a", ("hub-a", "initialAssignment", False, False)),
        ({"updateHubAssignment": True, "migrateDeviceData": False}, "hub-a", ("hub-a", "deviceDataReset", True, False)),
        ({"updateHubAssignment": True, "migrateDeviceData": True}, "hub-b", ("hub-b", "deviceDataMigrated", False, False)),
        ({"updateHubAssignment": True, "migrateDeviceData": False}, "hub-b", ("hub-b", "deviceDataReset", True, False)),
    ],
)
def test_reprovisioning_follows_the_policy(policy, chosen, expected):
    plan = allocation.plan(_assigned("hub-a"), {"reprovisionPolicy": policy}, chosen, "hub-a")
    assert (plan.hub, plan.substatus, plan.apply_initial_twin, plan.unchanged) == expected


def test_back_to_the_initial_hub():
    plan = allocation.plan(_assigned("hub-b", "deviceDataMigrated"), {}, "hub-a", "hub-a")
    assert plan.substatus == "reprovisionedToInitialAssignment"
