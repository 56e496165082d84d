"""The firmware-style C device (`client c-device`, Paho C) as a row of the matrix: SAS and X.509,
direct, through the edge gateway and after registering itself with DPS (empty register body).
What vendors' firmware does: model-id, telemetry with a property bag, C2D on
`devices/+/messages/devicebound/#`, twin GET and a NUL-padded reported patch, desired updates,
a direct method, and a refused token."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator

import pytest

from .. import programs
from ..suite import Case, cases
from ..targets import Target
from .devices import provisioned, require

pytestmark = pytest.mark.azure_unvalidated  # none of these has been run against real Azure yet

VARIANT = "c-device"
ROWS = cases((VARIANT,))
MODEL = "dtmi:com:example:Thermostat;1"
EDGE_SETTLE = 10  # as in test_device_features: the hub learns of a relayed subscription a moment later


@contextlib.contextmanager
def firmware(case: Case, target: Target, check: str) -> Iterator[tuple[str, list[str]]]:
    """(device id, the c-device flags) for a row: a device made through the service API, or on the
    DPS path an enrollment the device registers with itself."""
    require(case, target)
    programs.require_tool(VARIANT)
    if case.path != "dps":
        with provisioned(case, target, check) as creds:
            yield creds.device_id, programs.hub_flags(creds)
        return
    assert target.dps is not None and target.service is not None
    svc = target.service
    name = f"conf-c-{case.auth}-{check}-{uuid.uuid4().hex[:6]}"
    key = base64.b64encode(os.urandom(32)).decode() if case.auth == "sas" else None
    cert, certobj = target.new_cert(name) if case.auth == "x509" else (None, None)
    svc.create_enrollment(name, symmetric_key=key, certificate_pem=certobj.cert_pem if certobj else None)
    try:
        flags = programs.dps_flags(target.dps, target.registrant(name, key=key, cert=cert))
        yield name, [*flags, "--port", str(target.mqtt_port)]
    finally:
        svc.delete_device(name)
        svc.delete_enrollment(name)


def _line(device: programs.Running, prefix: str, timeout: float) -> str | None:
    """The next output line starting with prefix within timeout, or None."""
    for line in device.child.read(time.monotonic() + timeout):
        if line is None:
            return None
        if line.startswith(prefix):
            return line.split(" ", 1)[1]
    return None


def _until_seen(device: programs.Running, prefix: str, act, case: Case) -> str:
    """Do `act` (send C2D, patch desired) until the device prints `prefix`: through the edge,
    again until the hub knows the relayed subscription."""
    deadline = time.monotonic() + (EDGE_SETTLE + 20 if case.path == "edge" else 30)
    while True:
        act()
        line = _line(device, prefix, 1 if case.path == "edge" else 30)
        if line is not None:
            return line
        assert time.monotonic() < deadline, f"the device printed no {prefix!r} line: {device.child.tail()}"


@pytest.mark.parametrize("case", ROWS)
def test_connect_and_authenticate(case, target):
    with firmware(case, target, "connect") as (device_id, flags):
        out = programs.ok(programs.run(VARIANT, *flags, "--count", "0", "--model-id", MODEL))
        assert "ready" in out.splitlines(), out
        if case.path == "dps":
            assert "with an empty body" in out and f"as device {device_id}" in out, out
        assert target.service.get_twin(device_id).get("modelId") == MODEL


@pytest.mark.parametrize("case", ROWS)
def test_telemetry_with_properties(case, target):
    with firmware(case, target, "telemetry") as (device_id, flags):
        out = programs.ok(programs.run(VARIANT, *flags, "--count", "1", "--data", '{"temperature": 21.5}',
                                       "--prop", "unit=celsius", "--prop", "alert=no", "--model-id", MODEL))
        assert "acknowledged 1 of 1 messages" in out, out
        target.service.wait_for_telemetry(device_id, body={"temperature": 21.5}, properties={"unit": "celsius", "alert": "no"}, timeout=30)


@pytest.mark.parametrize("case", ROWS)
def test_cloud_to_device(case, target):
    if not target.service.can_send_c2d:
        pytest.skip("C2D is sent over AMQP only in Azure, which the checks do not speak")
    with firmware(case, target, "c2d") as (device_id, flags):
        with programs.Running(VARIANT, *flags, "--count", "0", "--c2d", "1", "--wait", "60") as device:
            line = _until_seen(device, "c2d ", lambda: target.service.send_c2d(device_id, "reboot", {"reason": "update"}), case)
    event = json.loads(line)
    assert event["payload"] == "reboot" and event["topic"].startswith(f"devices/{device_id}/messages/devicebound/"), event
    assert "reason=update" in event["topic"], event


@pytest.mark.parametrize("case", ROWS)
def test_twin_get_reported_desired(case, target):
    with firmware(case, target, "twin") as (device_id, flags):
        report = '{"serialNumber":"SN-42"}'
        with programs.Running(VARIANT, *flags, "--count", "0", "--report", report, "--report-buffer", "512",
                              "--desired", "1", "--wait", "60") as device:
            assert any(line.startswith("twin {") for line in device.child.seen), device.child.tail()
            assert target.service.get_twin(device_id)["properties"]["reported"]["serialNumber"] == "SN-42"
            line = _until_seen(device, "desired ", lambda: target.service.patch_desired(device_id, {"interval": 30}), case)
    patch = json.loads(json.loads(line))
    assert patch["interval"] == 30 and "$version" in patch, patch


@pytest.mark.parametrize("case", ROWS)
def test_direct_method(case, target):
    with firmware(case, target, "method") as (device_id, flags):
        with programs.Running(VARIANT, *flags, "--count", "0", "--methods", "1", "--wait", "60"):
            answer = target.service.invoke_method(device_id, "reboot", {"delay": 1}, timeout=30,
                                                  connect_timeout=EDGE_SETTLE if case.path == "edge" else 0)
    assert answer == {"status": 200, "payload": {"method": "reboot", "echo": {"delay": 1}}}, json.dumps(answer)


@pytest.mark.parametrize("case", cases((VARIANT,), auths=("sas",), paths=("direct", "dps")))
def test_refuses_bad_token(case, target):
    with firmware(case, target, "badtoken") as (device_id, flags):
        wrong = [programs.WRONG_KEY if i > 0 and flags[i - 1] == "--sas-key" else f for i, f in enumerate(flags)]
        line = programs.error_line(programs.run(VARIANT, *wrong))
    assert programs.connack_code(line) == 5, line
