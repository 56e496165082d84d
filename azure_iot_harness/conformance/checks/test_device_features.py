"""What a device does with IoT Hub, for each variant × authentication × path."""

from __future__ import annotations

import json
import queue
import time

import pytest

from ..suite import cases
from ..variants import open_session
from .devices import provisioned

pytestmark = pytest.mark.azure_unvalidated  # none of these has been run against real Azure yet
CASES = cases(("paho", "sdk"))
# Devices presenting a chain (their certificate and an intermediate) to a CA verified on the hub:
# the telemetry check only (it connects and authenticates first), to keep the matrix's run short.
CHAIN_CASES = cases(("paho", "sdk"), auths=("x509-chain",))
# Through an IoT Edge gateway a device's SUBACK comes from edgeHub, which subscribes upstream
# afterwards: the hub learns of the subscription a moment later, and the device cannot know when.
EDGE_SETTLE = 10


@pytest.mark.parametrize("case", CASES)
def test_connect_and_authenticate(case, target):
    with provisioned(case, target, "connect") as creds:
        open_session(case.variant, creds).close()


@pytest.mark.parametrize("case", CASES + CHAIN_CASES)
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
            body, props = _c2d_round_trip(case, target, creds.device_id, session)
        finally:
            session.close()
    assert body == "reboot"
    assert props.get("reason") == "update", props


def _c2d_round_trip(case, target, device_id, session):
    """Send C2D and receive it; via the edge, send again until the hub knows the relayed
    subscription (the hub delivers only what was queued after the device subscribed)."""
    if case.path != "edge":
        target.service.send_c2d(device_id, "reboot", {"reason": "update"})
        return session.receive_c2d(timeout=30)
    deadline = time.monotonic() + EDGE_SETTLE + 20
    while True:
        target.service.send_c2d(device_id, "reboot", {"reason": "update"})
        try:
            return session.receive_c2d(timeout=1)
        except queue.Empty:
            if time.monotonic() > deadline:
                raise


def _desired_round_trip(case, target, device_id, session):
    """Patch desired and receive the patch; via the edge, patch again until the hub knows the
    relayed subscription."""
    if case.path != "edge":
        target.service.patch_desired(device_id, {"interval": 30})
        return session.next_desired(timeout=30)
    deadline = time.monotonic() + EDGE_SETTLE + 20
    while True:
        target.service.patch_desired(device_id, {"interval": 30})
        try:
            return session.next_desired(timeout=1)
        except queue.Empty:
            if time.monotonic() > deadline:
                raise


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
            patch = _desired_round_trip(case, target, creds.device_id, session)
            assert patch["interval"] == 30 and "$version" in patch, patch
        finally:
            session.close()


@pytest.mark.parametrize("case", CASES)
def test_direct_method(case, target):
    with provisioned(case, target, "method") as creds:
        session = open_session(case.variant, creds)
        try:
            session.serve_method(lambda name, payload: (200, {"method": name, "echo": payload}))
            answer = target.service.invoke_method(creds.device_id, "reboot", {"delay": 1}, timeout=30,
                                                  connect_timeout=EDGE_SETTLE if case.path == "edge" else 0)
        finally:
            session.close()
    assert answer == {"status": 200, "payload": {"method": "reboot", "echo": {"delay": 1}}}, json.dumps(answer)
