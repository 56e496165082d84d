"""`client c-device`: the firmware-style C device on Paho C, built with the system compiler, against
`serve`: SAS and X.509, direct and after DPS (empty register body), model-id, the `+` C2D filter,
twin with a NUL-padded reported patch, desired updates and a direct method."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from azure_iot_harness.clients import c_device
from azure_iot_harness.running.errors import CommandError
from azure_iot_harness.running.service import https_connection, service_token
from tests.clients.helpers import client, failed, ok, start, wait_messages

MODEL = "dtmi:com:example:Thermostat;1"
WRONG_KEY = "d3JvbmcgMzIgYnl0ZXMgb2Yga2V5IG1hdGVyaWFsIQ=="


@pytest.fixture(scope="module", autouse=True)
def paho_c():
    """Debian's libpaho-mqtt-dev and a C compiler, which `bash scripts/install-tools` installs."""
    try:
        c_device.build()
    except CommandError as exc:
        pytest.fail(f"{exc}: run `bash scripts/install-tools` (or `bash scripts/test`)")


def _service(info: dict, method: str, path: str, body: object = None) -> tuple[int, dict]:
    conn = https_connection(info)
    try:
        headers = {"Authorization": service_token(info), "Content-Type": "application/json"}
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else {}
    finally:
        conn.close()


def _twin(info: dict, device: str) -> dict:
    status, twin = _service(info, "GET", f"/twins/{urllib.parse.quote(device)}?api-version=2021-04-12")
    assert status == 200, twin
    return twin


def test_sas_firmware_session(hub):
    out = ok(client(hub, "c-device", "--count", "2", "--interval", "0", "--prop", "unit=°C", "--prop", "run=c sas",
                    "--model-id", MODEL, "--report", '{"serialNumber":"SN-1"}', "--report-buffer", "512"))
    assert "as device1 (hub localhost, SAS) with username localhost/device1/?api-version=2020-09-30&DeviceClientType=" in out
    assert f"&model-id={urllib.parse.quote(MODEL, safe='')}" in out
    assert "subscribed to devices/+/messages/devicebound/# (QoS 1)" in out
    assert "acknowledged 2 of 2 messages" in out
    assert "reported 512 bytes (23 of JSON), version" in out
    found = wait_messages(hub.info, "device1", 2, where={"run": "c sas"})
    assert all(m["properties"] == {"unit": "°C", "run": "c sas"} for m in found)
    assert all(m["systemProperties"]["dt-dataschema"] == MODEL for m in found)
    assert all(m["systemProperties"]["content-type"] == "application/json" for m in found)
    twin = _twin(hub.info, "device1")
    assert twin["modelId"] == MODEL and twin["properties"]["reported"]["serialNumber"] == "SN-1"


def test_x509_firmware_session(hub):
    out = ok(client(hub, "c-device", "--x509", "--count", "1", "--prop", "run=c x509"))
    assert "as x509-device1 (hub localhost, X.509)" in out
    (m,) = wait_messages(hub.info, "x509-device1", 1, where={"run": "c x509"})
    assert '"type":"x509Certificate"' in m["systemProperties"]["iothub-connection-auth-method"]
    assert _twin(hub.info, "x509-device1")["properties"]["reported"]["firmware"] == "c-device 1.0"


@pytest.mark.parametrize("auth", ["sas", "x509"])
def test_provisioned_with_an_empty_register_body(hub, auth):
    rid = f"c-dps-{auth}"
    out = ok(client(hub, "c-device", "--dps", *(["--x509"] if auth == "x509" else []), "--registration-id", rid,
                    "--count", "1", "--prop", f"run={rid}"))
    assert "published $dps/registrations/PUT/iotdps-register/?$rid=1 with an empty body" in out
    assert "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=" in out
    assert f"assigned to localhost as device {rid}" in out and "connected to mqtts://127.0.0.1:" in out
    wait_messages(hub.info, rid, 1, where={"run": rid})


def test_c2d_desired_and_a_method_while_it_serves(hub):
    info = hub.info
    proc = start(hub, "c-device", "--count", "0", "--c2d", "1", "--desired", "1", "--methods", "1", "--wait", "30")
    try:
        status, _ = _service(info, "POST", "/_emulator/c2d/device1", {"data": "reboot", "properties": {"reason": "new firmware"}})
        assert status == 201
        status, _ = _service(info, "PATCH", "/twins/device1?api-version=2021-04-12", {"properties": {"desired": {"interval": 30}}})
        assert status == 200
        status, answer = _service(info, "POST", "/twins/device1/methods?api-version=2021-04-12",
                                  {"methodName": "reboot", "payload": {"delay": 1}, "responseTimeoutInSeconds": 20})
        assert (status, answer) == (200, {"status": 200, "payload": {"method": "reboot", "echo": {"delay": 1}}})
        assert proc.wait(30) == 0
        lines = proc.stdout.until("received", timeout=10)
    finally:
        proc.terminate()
    events = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in lines if line.split(" ", 1)[0] in ("c2d", "desired", "method")}
    assert events["c2d"]["payload"] == "reboot" and "reason=new%20firmware" in events["c2d"]["topic"]
    assert events["c2d"]["topic"].startswith("devices/device1/messages/devicebound/")
    assert json.loads(events["desired"])["interval"] == 30
    assert events["method"]["name"] == "reboot" and json.loads(events["method"]["payload"]) == {"delay": 1}


def test_binary_and_utf8_c2d_payloads_are_printed_as_json(hub):
    proc = start(hub, "c-device", "--count", "0", "--c2d", "2", "--wait", "30")
    try:
        for body in ({"dataBase64": "/wAB"}, {"data": "21.5 °C"}):
            assert _service(hub.info, "POST", "/_emulator/c2d/device1", body)[0] == 201
        assert proc.wait(30) == 0
        lines = proc.stdout.until("received", timeout=10)
    finally:
        proc.terminate()
    payloads = [json.loads(line.split(" ", 1)[1])["payload"] for line in lines if line.startswith("c2d ")]
    assert payloads == ["\u00ff\u0000\u0001", "21.5 °C"]


def test_wrong_key_is_one_error_line_with_the_connack(hub):
    line = failed(client(hub, "c-device", "--sas-key", WRONG_KEY))
    assert line == "error: the hub refused the connection: CONNACK 5 (not authorized)"


def test_untrusted_server_is_one_error_line(hub):
    line = failed(client(hub, "c-device", "--ca-file", "/etc/ssl/certs/ca-certificates.crt"))
    assert line.startswith("error: cannot connect to the hub at 127.0.0.1:") and line.endswith("TLS: certificate verify failed")


def test_dps_refusal_is_one_error_line(hub):
    line = failed(client(hub, "c-device", "--dps", "--registration-id", "c-dps-bad", "--sas-key", WRONG_KEY))
    assert line == "error: DPS refused the connection: CONNACK 5 (not authorized)"


def test_usage_errors_exit_2(hub):
    assert "--host" in failed(client(hub, "c-device", "--dps", "--host", "x.azure-devices.net"), 2)
    assert "--report" in failed(client(hub, "c-device", "--report", "not json"), 2)


def test_a_missing_compiler_is_a_usage_error(tmp_path):
    with pytest.raises(CommandError) as exc:
        c_device.build("no-such-cc", folder=tmp_path)
    assert exc.value.code == 2 and "apt-get install libpaho-mqtt-dev" in str(exc.value)


def test_through_the_edge_gateway(edge_hub):
    out = ok(client(edge_hub, "c-device", "--edge", "--count", "1", "--prop", "run=c edge"))
    assert "as leaf-device1 (hub localhost, SAS)" in out and "connected to mqtts://127.0.0.2:" in out
    wait_messages(edge_hub.info, "leaf-device1", 1, where={"run": "c edge"})
