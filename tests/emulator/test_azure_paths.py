"""Request paths as IoT Hub and DPS match them: trailing slash ignored, fixed words in any case."""

from __future__ import annotations

import pytest

from tests.helpers import https

HUB = "?api-version=2021-04-12"
DPS = "?api-version=2021-10-01"


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/devices/"),  # what the Node SDK's Registry.list() sends
        ("GET", "/devices/device1/"),
        ("GET", "/devices/device1/modules/"),
        ("GET", "/devices/device1/modules/module1/"),
        ("GET", "/twins/device1/"),
        ("GET", "/statistics/devices/"),
    ],
)
def test_a_trailing_slash_is_ignored_on_hub_routes(emulator, method, path):
    assert https(emulator, method, path + HUB)[0] == 200


def test_a_trailing_slash_is_ignored_on_writes_and_dps_routes(emulator):
    status, _, twin = https(emulator, "PATCH", "/twins/device1/" + HUB, {"tags": {"a": 1}})
    assert status == 200 and twin["tags"] == {"a": 1}
    status, _, doc = https(emulator, "PUT", "/devices/slashed/" + HUB, {"deviceId": "slashed"})
    assert status == 200 and doc["deviceId"] == "slashed"
    token = emulator.dps_service_token()
    assert https(emulator, "GET", "/enrollmentGroups/symmetric-group1/" + DPS, token=token)[0] == 200


def test_the_emulators_own_api_keeps_its_paths(emulator):
    assert https(emulator, "GET", "/_emulator/health/", token=False)[0] == 404


def test_dps_routes_match_in_any_case(emulator):
    token = emulator.dps_service_token()
    # The Node DPS service SDK's getEnrollmentGroupAttestationMechanism.
    status, _, mechanism = https(emulator, "POST", "/enrollmentgroups/symmetric-group1/attestationmechanism" + DPS, token=token)
    assert status == 200 and mechanism["type"] == "symmetricKey"
    status, _, group = https(emulator, "GET", "/ENROLLMENTGROUPS/symmetric-group1" + DPS, token=token)
    assert status == 200 and group["enrollmentGroupId"] == "symmetric-group1"


def test_hub_routes_match_in_any_case_and_ids_keep_theirs(emulator):
    status, _, doc = https(emulator, "GET", "/Devices/device1" + HUB)
    assert status == 200 and doc["deviceId"] == "device1"
    assert https(emulator, "GET", "/TWINS/device1/Modules/module1" + HUB)[0] == 200
    assert https(emulator, "GET", "/devices/DEVICE1" + HUB)[0] == 404
    status, headers, _ = https(emulator, "GET", "/Jobs/v2/job1" + HUB)
    assert status == 501 and headers["iothub-errorcode"] == "NotImplemented"
