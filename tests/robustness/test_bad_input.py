"""Bad input on the hub answers and never crashes: numbers, JSON nesting, query strings."""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import urllib.parse

import pytest
from azure.iot.hub import IoTHubRegistryManager
from msrest.exceptions import HttpOperationError

from azure_iot_harness.config import WELL_KNOWN_SYMMETRIC_GROUP_KEYS
from azure_iot_harness.emulator.protocol import sas
from tests.helpers import RawClient, connect_packet, https, sas_device, wait_for

ABSURD_SE = "1" + "0" * 400


def _absurd_token(emu, device: str = "device1") -> str:
    """A token signed with the device's real key whose expiry no clock can hold."""
    key = emu.registry.get(device)["authentication"]["symmetricKey"]["primaryKey"]
    sr = f"{emu.host}%2Fdevices%2F{device}"
    return f"SharedAccessSignature sr={sr}&sig={sas.sign(key, sr, int(ABSURD_SE))}&se={ABSURD_SE}"


def test_absurd_expiry_is_connack_5_and_the_live_connection_survives(emulator):
    legit = sas_device(emulator, "device1")
    assert legit.connect() == 0
    intruder = RawClient(emulator)
    intruder.send(connect_packet("device1", f"{emulator.host}/device1/?api-version=2021-04-12", _absurd_token(emulator)))
    assert intruder.connack() == 5
    mid = legit.publish("devices/device1/messages/events/", b"still here")
    wait_for(lambda: mid in legit.acked)
    assert not legit.disconnected.is_set()
    assert emulator.registry.is_connected("device1")
    legit.close()
    intruder.close()


def test_absurd_expiry_leaves_no_ghost_session(emulator):
    intruder = RawClient(emulator)
    intruder.send(connect_packet("device1", f"{emulator.host}/device1/?api-version=2021-04-12", _absurd_token(emulator)))
    assert intruder.connack() == 5
    assert intruder.closed_by_server()
    assert ("device1", None) not in emulator.hub.sessions
    assert not emulator.registry.is_connected("device1")


# ---- JSON nested far deeper than any recursion limit ---------------------------------------------

DEEP = 5000  # levels: five times Python's default recursion limit


def _deep_object(depth: int = DEEP) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def test_deep_reported_patch_gets_400_on_the_topic_and_the_connection_stays(emulator):
    dev = sas_device(emulator, "device1")
    assert dev.connect() == 0
    dev.client.subscribe("$iothub/twin/res/#", 0)
    wait_for(lambda: "$iothub/twin/res/#" in emulator.hub.sessions[("device1", None)].state.subscriptions)
    dev.publish("$iothub/twin/PATCH/properties/reported/?$rid=deep", _deep_object(), qos=0)
    [answer] = wait_for(lambda: [m for m in dev.messages if "rid=deep" in m.topic])
    assert answer.topic.startswith("$iothub/twin/res/400/")
    assert b"deeper than" in answer.payload
    mid = dev.publish("devices/device1/messages/events/", b"after the deep patch")
    wait_for(lambda: mid in dev.acked)
    assert not dev.disconnected.is_set()
    dev.close()


def test_deep_method_response_gives_the_service_400_not_500(emulator):
    dev = sas_device(emulator, "device1")
    assert dev.connect() == 0

    def answer(client, userdata, msg):
        rid = msg.topic.split("$rid=")[1]
        client.publish(f"$iothub/methods/res/200/?$rid={rid}", b"[" * DEEP + b"]" * DEEP)

    dev.client.on_message = answer
    dev.client.subscribe("$iothub/methods/POST/#", 0)
    wait_for(lambda: "$iothub/methods/POST/#" in emulator.hub.sessions[("device1", None)].state.subscriptions)
    status, headers, body = https(emulator, "POST", "/twins/device1/methods?api-version=2021-04-12", {"methodName": "m"})
    assert status == 400 and headers["iothub-errorcode"] == "ArgumentInvalid"
    assert "deeper than" in body["Message"]
    dev.close()


@pytest.mark.parametrize(
    "method, path",
    [
        ("PATCH", "/twins/device1?api-version=2021-04-12"),
        ("PUT", "/devices/deep1?api-version=2021-04-12"),
        ("POST", "/devices/query?api-version=2021-04-12"),
        ("POST", "/_emulator/c2d/device1"),
        ("PUT", "/enrollments/deep1?api-version=2021-10-01"),
    ],
)
def test_deep_rest_bodies_get_400(emulator, method, path):
    token = emulator.dps_service_token() if path.startswith("/enrollments") else None
    status, _, body = _raw_https(emulator, method, path, _deep_object(), token=token)
    assert status == 400, body
    assert "deeper than" in json.dumps(body)


def test_deep_dps_register_body_gets_400(emulator):
    key = sas.derive_device_key(WELL_KNOWN_SYMMETRIC_GROUP_KEYS[0], "deep-reg")
    scope = emulator.config.dps_id_scope
    token = sas.generate(f"{scope}/registrations/deep-reg", key, key_name="registration")
    path = f"/{scope}/registrations/deep-reg/register?api-version=2021-06-01"
    status, _, body = _raw_https(emulator, "PUT", path, _deep_object(), token=token)
    assert status == 400 and "deeper than" in body["message"]


# ---- numbers in query strings and headers --------------------------------------------------------


@pytest.mark.parametrize("after", ["9" * 30, "1" + "0" * 400, "-" + "9" * 25, "\u00b2", "1e3"])
def test_telemetry_after_an_absurd_number_is_400_with_a_message(emulator, after):
    status, _, body = https(emulator, "GET", f"/_emulator/telemetry?after={urllib.parse.quote(after)}")
    assert status == 400 and "query parameter after" in body["Message"]


def test_a_negative_telemetry_limit_is_400_not_everything(emulator):
    status, _, body = https(emulator, "GET", "/_emulator/telemetry?limit=-1")
    assert status == 400 and "query parameter limit" in body["Message"]


@pytest.mark.parametrize("header", ["x-ms-continuation", "x-ms-max-item-count"])
@pytest.mark.parametrize("value", ["\u00b2", "9" * 30])
def test_dps_paging_headers_that_are_not_integers_are_400(emulator, header, value):
    path = "/enrollments/query?api-version=2021-10-01"
    status, _, body = _raw_https(
        emulator, "POST", path, b'{"query": "*"}', token=emulator.dps_service_token(), headers={header: value}
    )
    assert status == 400, body


def _raw_https(emu, method, path, body: bytes, *, token=None, headers=None):
    """One request with a body given as bytes (https() would serialise a Python value)."""
    ctx = ssl.create_default_context(cafile=str(emu.ca_file))
    conn = http.client.HTTPSConnection("localhost", emu.https_port, context=ctx, timeout=30)
    hdrs = {"Content-Type": "application/json", "Authorization": emu.service_token() if token is None else token}
    hdrs.update(headers or {})
    # http.client sends str header values as latin-1: exactly what a careless client sends.
    conn.request(method, path, body=body, headers=hdrs)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    try:
        return resp.status, dict(resp.headers), json.loads(raw)
    except ValueError:
        return resp.status, dict(resp.headers), raw.decode(errors="replace")


# ---- HTTPS answers -------------------------------------------------------------------------------


def test_service_sdk_errors_carry_the_reason_phrase(emulator, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.ca_file))
    registry = IoTHubRegistryManager.from_connection_string(emulator.connection_string())
    with pytest.raises(HttpOperationError, match="'Not Found'"):
        registry.get_device("no-such-device")


@pytest.mark.parametrize(
    "method, path, status, reason",
    [
        ("POST", "/_emulator/c2d/device1", 401, "Unauthorized"),  # refused from the headers alone
        ("POST", "/no/such/path", 404, "Not Found"),
        ("PUT", "/devices/x?api-version=2021-04-12", 413, "Request Entity Too Large"),  # over 256 KB
    ],
)
def test_an_answer_before_the_body_is_read_logs_no_traceback(emulator, caplog, method, path, status, reason):
    body = b"x" * 300_000
    for _ in range(20):  # the traceback came for most such requests, not all
        got = _raw_https(emulator, method, path, body, token=None if status != 401 else "")
        assert got[0] == status
    conn = http.client.HTTPSConnection("localhost", emulator.https_port, context=ssl.create_default_context(cafile=str(emulator.ca_file)))
    conn.request(method, path, body=body, headers={"Authorization": emulator.service_token() if status != 401 else ""})
    assert conn.getresponse().reason == reason
    conn.close()
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not problems, [r.getMessage() for r in problems]
