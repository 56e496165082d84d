"""The field's client variants that are programs (`azure-iot-harness client VARIANT`), run as
subprocesses with flags made from the target's credentials: the same rows as the device checks
(connect, telemetry with properties) and the refusals each program reports."""

from __future__ import annotations

import base64
import os
import uuid

import pytest

from .. import programs
from ..suite import cases
from .devices import provisioned

pytestmark = pytest.mark.azure_unvalidated  # none of these has been run against real Azure yet

BODY = '{"temperature": 21.5}'
PROPS = {"unit": "celsius", "alert": "no"}
# What each program supports: mosquitto-bridge SAS and X.509, direct and through the edge; the
# others SAS, direct (Kepware's bare username is refused by edgeHub: a refusal row below). Kepware
# has no telemetry-with-properties row: its topic carries no property bag.
ROWS = (
    cases(("mosquitto-bridge",), paths=("direct", "edge"))
    + cases(("translator", "kepware", "node-red"), auths=("sas",), paths=("direct",))
)
TELEMETRY_ROWS = (
    cases(("mosquitto-bridge",), paths=("direct", "edge"))
    + cases(("translator", "node-red"), auths=("sas",), paths=("direct",))
)
TEMPLATE = "plant/{unit}/{alert}"


def _site_broker() -> list[str]:
    return ["--source", "127.0.0.1:0", "--site-broker", "auto"]


@pytest.mark.parametrize("case", ROWS)
def test_connect_and_authenticate(case, target):
    programs.require_tool(case.variant)
    with provisioned(case, target, "connect") as creds:
        flags = programs.hub_flags(creds)
        if case.variant == "mosquitto-bridge":
            with programs.Running(case.variant, *flags, "--local-port", "0", "--connect-timeout", "15"):
                pass
        elif case.variant == "translator":
            with programs.Running(case.variant, *flags, *_site_broker(), ready="ready:"):
                pass
        elif case.variant == "node-red":  # a headless Node-RED whose mqtt-broker node connects, one publish acknowledged
            out = programs.ok(programs.run(case.variant, *flags, "--count", "1", "--interval", "0.1", timeout=90))
            assert "Node-RED connected to" in out, out
        else:  # kepware: connects with its bare username and publishes once, acknowledged
            out = programs.ok(programs.run(case.variant, *flags, "--count", "1", "--interval", "0", "--tag", "Conformance.Tag"))
            assert f"with username {creds.host}/{creds.device_id}\n" in out, out
            target.service.wait_for_telemetry(creds.device_id, predicate=lambda m: "Conformance.Tag" in str(m.get("body")), timeout=30)


@pytest.mark.parametrize("case", TELEMETRY_ROWS)
def test_telemetry_with_properties(case, target):
    programs.require_tool(case.variant)
    with provisioned(case, target, "telemetry") as creds:
        flags = programs.hub_flags(creds)
        if case.variant == "mosquitto-bridge":
            with programs.Running(case.variant, *flags, "--local-port", "0", "--connect-timeout", "15") as bridge:
                # a local topic remapped onto the telemetry topic; its rest is the property bag
                programs.publish_local(bridge.local_port, "local/telemetry/" + "&".join(f"{k}={v}" for k, v in PROPS.items()), BODY)
                target.service.wait_for_telemetry(creds.device_id, body={"temperature": 21.5}, properties=PROPS, timeout=30)
            return
        if case.variant == "translator":
            with programs.Running(case.variant, *flags, *_site_broker(), "--template", TEMPLATE, "--count", "1", ready="ready:") as tr:
                programs.publish_local(tr.local_port, "plant/celsius/no", BODY)
                assert tr.wait(30) == 0, tr.child.tail()
            props = {**PROPS, "mqtt-topic": "plant/celsius/no"}
        else:  # node-red: an inject → mqtt out flow
            out = programs.ok(programs.run(case.variant, *flags, "--count", "1", "--interval", "0.1", "--data", BODY,
                                           *(f"--prop={k}={v}" for k, v in PROPS.items()), timeout=90))
            assert "acknowledged 1 of 1 messages" in out, out
            props = PROPS
        target.service.wait_for_telemetry(creds.device_id, body={"temperature": 21.5}, properties=props, timeout=30)


@pytest.mark.parametrize("case", cases(("mosquitto-bridge", "translator", "kepware", "node-red"), auths=("sas",), paths=("direct",)))
def test_refuses_bad_token(case, target):
    programs.require_tool(case.variant)
    with provisioned(case, target, "badtoken") as creds:
        flags = programs.hub_flags(creds, key=programs.WRONG_KEY)
        extra = {"mosquitto-bridge": ["--local-port", "0", "--connect-timeout", "15"], "translator": _site_broker(),
                 "kepware": ["--count", "1"], "node-red": ["--count", "1"]}[case.variant]
        line = programs.error_line(programs.run(case.variant, *flags, *extra, timeout=90))
    assert programs.connack_code(line) in (4, 5), line


@pytest.mark.parametrize("case", cases(("kepware",), auths=("sas",), paths=("edge",)))
def test_refuses_username_without_api_version(case, target):
    """edgeHub wants ?api-version= in the username; Kepware sends none (IoT Hub accepts that)."""
    with provisioned(case, target, "bareuser") as creds:
        line = programs.error_line(programs.run(case.variant, *programs.hub_flags(creds), "--count", "1"))
    assert programs.connack_code(line) == 5 and "--with-api-version" in line, line


@pytest.mark.parametrize("case", cases(("mqtt-cli",), paths=("dps",)))
def test_dps_registration(case, target):
    """The manual flow with mosquitto, mosquitto_sub and mosquitto_pub (one bridged connection to DPS)."""
    if target.dps is None:
        pytest.skip("this target has no DPS settings (DPS connection string and ID scope)")
    programs.require_tool(case.variant)
    name = f"conf-{case.variant}-{case.auth}-{uuid.uuid4().hex[:6]}"
    key = base64.b64encode(os.urandom(32)).decode() if case.auth == "sas" else None
    cert, certobj = target.new_cert(name) if case.auth == "x509" else (None, None)
    svc = target.service
    svc.create_enrollment(name, symmetric_key=key, certificate_pem=certobj.cert_pem if certobj else None)
    try:
        res = programs.run(case.variant, *programs.dps_flags(target.dps, target.registrant(name, key=key, cert=cert)), "--then-send", "0")
        out = programs.ok(res)
        assert f"as device {name} (" in out, out
        device = svc.get_device(name)
        assert device["authentication"]["type"] == ("sas" if key else "selfSigned"), device["authentication"]
    finally:
        svc.delete_device(name)
        svc.delete_enrollment(name)
