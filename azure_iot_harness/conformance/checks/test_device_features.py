"""What a device does with IoT Hub, for each variant × authentication × path."""

from __future__ import annotations

import json

import pytest

from ..suite import cases
from ..variants import open_session
from .devices import provisioned

pytestmark = pytest.mark.azure_unvalidated  # none of these has been run against real Azure yet
CASES = cases(("paho", "sdk"))


@pytest.mark.parametrize("case", CASES)
def test_connect_and_authenticate(case, target):
    with provisioned(case, target, "connect") as creds:
        open_session(case.variant, creds).close()


@pytest.mark.parametrize("case", CASES)
def test_telemetry_with_properties(case, target):
    with provisioned(case, target, "telemetry") as creds:
        session = open_session(case.variant, creds)
        try:
            session.send_telemetry('{"temperature": 21.5}', {"unit": "celsius", "alert": "no"})
        finally:
            session.close()
        target.service.wait_for_telemetry(creds.device_id, body={"temperature": 21.5}, properties={"unit": "celsius", "alert": "no"}, timeout=30)


@pytest.mark.parametrize("case", CASES)
def test_cloud_to_device(case, target):
    if not target.service.can_send_c2d:
        pytest.skip("C2D is sent over AMQP only in Azure, which the checks do not speak")
    with provisioned(case, target, "c2d") as creds:
        session = open_session(case.variant, creds)
        try:
            session.subscribe_c2d()
            target.service.send_c2d(creds.device_id, "reboot", {"reason": "update"})
            body, props = session.receive_c2d(timeout=30)
        finally:
            session.close()
    assert body == "reboot"
    assert props.get("reason") == "update", props


@pytest.mark.parametrize("case", CASES)
def test_twin_get_reported_desired(case, target):
    with provisioned(case, target, "twin") as creds:
        session = open_session(case.variant, creds)
        try:
            twin = session.get_twin()
            assert {"desired", "reported"} <= set(twin), twin
            session.report({"firmware": "1.2.3"})
            assert target.service.get_twin(creds.device_id)["properties"]["reported"]["firmware"] == "1.2.3"
            session.subscribe_desired()
            target.service.patch_desired(creds.device_id, {"interval": 30})
            patch = session.next_desired(timeout=30)
            assert patch["interval"] == 30 and "$version" in patch, patch
        finally:
            session.close()


@pytest.mark.parametrize("case", CASES)
def test_direct_method(case, target):
    with provisioned(case, target, "method") as creds:
        session = open_session(case.variant, creds)
        try:
            session.serve_method(lambda name, payload: (200, {"method": name, "echo": payload}))
            answer = target.service.invoke_method(creds.device_id, "reboot", {"delay": 1}, timeout=30)
        finally:
            session.close()
    assert answer == {"status": 200, "payload": {"method": "reboot", "echo": {"delay": 1}}}, json.dumps(answer)
