"""DPS over MQTT on the shared listener: raw MQTT and paho, SAS and X.509, and every refusal."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from azure_iot_harness.certs import DevPKI, self_signed_cert
from azure_iot_harness.emulator.app import EmulatorThread
from azure_iot_harness.emulator.protocol import sas
from azure_iot_harness.errors import ProvisioningError
from tests.emulator.dps.helpers import (
    POLL,
    REGISTER,
    RawDps,
    decode_publish,
    group_key,
    individual,
    token,
    username,
    x509_individual,
)
from tests.helpers import PahoDevice, RawClient, connect_packet, publish_packet, subscribe_packet, wait_for


def _hub_connack(emu, device, password=None, cert=None, tmp_path=None):
    certfile = keyfile = None
    if cert is not None:
        certfile, keyfile = (str(p) for p in cert.write(tmp_path / "hub"))
    c = RawClient(emu, certfile=certfile, keyfile=keyfile)
    try:
        c.send(connect_packet(device, f"{emu.host}/{device}/?api-version=2021-04-12", password))
        return c.connack()
    finally:
        c.close()


# ---- the flows, as a manual MQTT client does them -------------------------------------------------


def test_paho_symmetric_key_group_flow(emulator):
    """Subscribe, register, poll with the operation id: the well-known group and a derived key."""
    rid = "paho-sym-1"
    dev = PahoDevice(emulator, rid, username=username(emulator, rid), password=token(emulator, rid, group_key(rid)), clean_session=True)
    assert dev.connect() == 0
    try:
        dev.client.subscribe("$dps/registrations/res/#", qos=1)
        dev.publish(REGISTER.format(1), json.dumps({"registrationId": rid, "payload": None}))
        first = wait_for(lambda: dev.messages[:1])[0]
        assert first.topic == "$dps/registrations/res/202/?$rid=1&retry-after=3"
        accepted = json.loads(first.payload)
        assert accepted["status"] == "assigning" and set(accepted) == {"operationId", "status"}
        dev.publish(POLL.format(2, accepted["operationId"]), b"")
        second = wait_for(lambda: dev.messages[1:2])[0]
        assert second.topic == "$dps/registrations/res/200/?$rid=2"
        done = json.loads(second.payload)
    finally:
        dev.close()
    assert done["operationId"] == accepted["operationId"] and done["status"] == "assigned"
    state = done["registrationState"]
    assert state["registrationId"] == rid and state["deviceId"] == rid and state["assignedHub"] == emulator.host
    assert state["status"] == "assigned" and state["substatus"] == "initialAssignment"
    assert state["symmetricKey"] == {"enrollmentGroupId": "symmetric-group1"}
    assert {"createdDateTimeUtc", "lastUpdatedDateTimeUtc", "etag"} <= set(state)
    # The device exists in the hub with the derived key, and connects with it.
    auth = emulator.registry.get(rid)["authentication"]
    assert auth["type"] == "sas" and auth["symmetricKey"]["primaryKey"] == group_key(rid)
    hub_token = sas.generate(f"{emulator.host}/devices/{rid}", group_key(rid))
    assert _hub_connack(emulator, rid, hub_token) == 0


def test_individual_symmetric_key_flow(emulator_thread, emulator):
    enrollment = individual(emulator_thread, "ind-sym-1", deviceId="custom-device")
    key = enrollment["attestation"]["symmetricKey"]["secondaryKey"]
    c = RawDps(emulator, "ind-sym-1", token(emulator, "ind-sym-1", key))
    assert c.connack == 0
    done = c.provision("ind-sym-1")
    c.close()
    state = done["registrationState"]
    assert state["deviceId"] == "custom-device" and state["symmetricKey"] == {}
    keys = emulator.registry.get("custom-device")["authentication"]["symmetricKey"]
    assert keys == enrollment["attestation"]["symmetricKey"]


def test_x509_group_flow(emulator, tmp_path):
    cert = emulator.pki.issue_device_cert("x509-reg-1")
    c = RawDps(emulator, "x509-reg-1", cert=cert, tmp_path=tmp_path)
    assert c.connack == 0
    done = c.provision("x509-reg-1")
    c.close()
    state = done["registrationState"]
    assert state["x509"]["enrollmentGroupId"] == "x509-group1"
    assert state["x509"]["certificateInfo"]["sha1Thumbprint"] == cert.sha1_thumbprint
    assert "signingCertificateInfo" in state["x509"]
    # DPS registers X.509 devices by their certificate's thumbprint, whatever the enrollment.
    auth = emulator.registry.get("x509-reg-1")["authentication"]
    assert auth["type"] == "selfSigned" and auth["x509Thumbprint"]["primaryThumbprint"] == cert.sha256_thumbprint
    assert _hub_connack(emulator, "x509-reg-1", cert=cert, tmp_path=tmp_path) == 0


def test_x509_individual_flow_with_paho_and_blank_password(emulator_thread, emulator, tmp_path):
    cert = self_signed_cert("x509-ind-1")
    x509_individual(emulator_thread, "x509-ind-1", cert)
    certfile, keyfile = cert.write(tmp_path)
    dev = PahoDevice(
        emulator, "x509-ind-1", username=username(emulator, "x509-ind-1"), password="", certfile=str(certfile), keyfile=str(keyfile), clean_session=True
    )
    assert dev.connect() == 0
    try:
        dev.client.subscribe("$dps/registrations/res/#", qos=1)
        dev.publish(REGISTER.format("a"), json.dumps({"registrationId": "x509-ind-1"}))
        op = json.loads(wait_for(lambda: dev.messages[:1])[0].payload)["operationId"]
        dev.publish(POLL.format("b", op), b" ")
        done = json.loads(wait_for(lambda: dev.messages[1:2])[0].payload)
    finally:
        dev.close()
    assert done["status"] == "assigned"
    auth = emulator.registry.get("x509-ind-1")["authentication"]
    assert auth["type"] == "selfSigned" and auth["x509Thumbprint"]["primaryThumbprint"] == cert.sha256_thumbprint
    assert _hub_connack(emulator, "x509-ind-1", cert=cert, tmp_path=tmp_path) == 0


def test_group_device_of_a_foreign_ca_is_registered_by_its_thumbprint(emulator_thread, emulator, tmp_path):
    other = DevPKI.generate()
    ca = {"primary": {"certificate": other.device_ca_pem.decode()}}
    body = {"attestation": {"type": "x509", "x509": {"signingCertificates": ca}}}
    emulator_thread.call(emulator.dps.put_enrollment("group", "foreign", body, if_match=None))
    cert = other.issue_device_cert("foreign-1")
    c = RawDps(emulator, "foreign-1", cert=cert, tmp_path=tmp_path)
    assert c.provision("foreign-1")["registrationState"]["x509"]["enrollmentGroupId"] == "foreign"
    c.close()
    auth = emulator.registry.get("foreign-1")["authentication"]
    assert auth["type"] == "selfSigned" and auth["x509Thumbprint"]["primaryThumbprint"] == cert.sha256_thumbprint


@pytest.mark.parametrize("polls", [0, 3])
def test_number_of_assigning_answers_is_configurable(polls):
    with EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, dps_assigning_polls=polls, dps_retry_after=7) as emu:
        rid = f"polls-{polls}"
        c = RawDps(emu, rid, token(emu, rid, group_key(rid)))
        topic, answer = c.register(rid)
        seen = [(topic, answer["status"])]
        while answer["status"] == "assigning":
            topic, answer = c.poll(answer["operationId"], request_id=str(len(seen)))
            seen.append((topic, answer["status"]))
        c.close()
    if polls == 0:
        assert seen == [("$dps/registrations/res/200/?$rid=1", "assigned")]
    else:
        assert [s for _, s in seen] == ["assigning"] * 3 + ["assigned"]
        assert seen[1][0] == "$dps/registrations/res/202/?$rid=1&retry-after=7"
        assert seen[-1][0] == "$dps/registrations/res/200/?$rid=3"


def test_polls_while_assigning_carry_the_registration_id():
    with EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, dps_assigning_polls=2) as emu:
        c = RawDps(emu, "slow-1", token(emu, "slow-1", group_key("slow-1")))
        _, accepted = c.register("slow-1")
        _, polled = c.poll(accepted["operationId"])
        c.close()
    assert polled == {"operationId": accepted["operationId"], "status": "assigning",
                      "registrationState": {"registrationId": "slow-1", "status": "assigning"}}  # fmt: skip


# ---- the enrollment's settings ---------------------------------------------------------------------


def test_disabled_enrollment_answers_disabled(emulator_thread, emulator):
    enrollment = individual(emulator_thread, "off-1", provisioningStatus="disabled")
    c = RawDps(emulator, "off-1", token(emulator, "off-1", enrollment["attestation"]["symmetricKey"]["primaryKey"]))
    done = c.provision("off-1")
    c.close()
    assert done["status"] == "disabled" and done["registrationState"]["status"] == "disabled"
    assert "assignedHub" not in done["registrationState"] and emulator.registry.get("off-1") is None


def test_initial_twin_and_reprovisioning(emulator_thread, emulator):
    twin = {"tags": {"site": "lab"}, "properties": {"desired": {"interval": 5}}}
    policy = {"updateHubAssignment": True, "migrateDeviceData": False}
    enrollment = individual(emulator_thread, "twin-1", initialTwin=twin, reprovisionPolicy=policy)
    password = token(emulator, "twin-1", enrollment["attestation"]["symmetricKey"]["primaryKey"])
    c = RawDps(emulator, "twin-1", password)
    first = c.provision("twin-1")["registrationState"]
    stored = emulator.hub.twins.get(("twin-1", None))
    assert stored["tags"] == {"site": "lab"} and stored["desired"] == {"interval": 5}
    # A service change, then a new registration: migrateDeviceData false resets the twin.
    emulator_thread.call(emulator.hub.twins.service_update(("twin-1", None), {"tags": {"site": "moved"}}, if_match=None, replace=False))
    second = c.provision("twin-1")["registrationState"]
    c.close()
    assert second["substatus"] == "deviceDataReset" and second["createdDateTimeUtc"] == first["createdDateTimeUtc"]
    assert second["etag"] != first["etag"]
    assert emulator.hub.twins.get(("twin-1", None))["tags"] == {"site": "lab"}


def test_a_new_enrollment_after_deleting_the_old_one_and_the_device_starts_afresh(emulator_thread, emulator):
    old = individual(emulator_thread, "again-2", initialTwin={"tags": {"gen": 1}})
    c = RawDps(emulator, "again-2", token(emulator, "again-2", old["attestation"]["symmetricKey"]["primaryKey"]))
    c.provision("again-2")
    c.close()
    emulator_thread.call(emulator.dps.delete_enrollment("individual", "again-2", if_match=None))
    with pytest.raises(ProvisioningError, match="no registration record"):
        emulator.dps.get_registration("again-2")  # gone with its enrollment
    emulator_thread.call(emulator.registry.delete("again-2"))
    new = individual(emulator_thread, "again-2", initialTwin={"tags": {"gen": 2}, "properties": {"desired": {"v": 2}}})
    c = RawDps(emulator, "again-2", token(emulator, "again-2", new["attestation"]["symmetricKey"]["primaryKey"]))
    state = c.provision("again-2")["registrationState"]
    c.close()
    assert state["substatus"] == "initialAssignment"
    twin = emulator.hub.twins.get(("again-2", None))
    assert twin["tags"] == {"gen": 2} and twin["desired"] == {"v": 2}


def test_deleting_a_group_deletes_its_devices_records_only(emulator_thread, emulator):
    for rid in ("grp-a", "grp-b"):
        c = RawDps(emulator, rid, token(emulator, rid, group_key(rid)))
        c.provision(rid)
        c.close()
    lone = individual(emulator_thread, "lone-1")
    c = RawDps(emulator, "lone-1", token(emulator, "lone-1", lone["attestation"]["symmetricKey"]["primaryKey"]))
    c.provision("lone-1")
    c.close()
    emulator_thread.call(emulator.dps.delete_enrollment("group", "SYMMETRIC-group1", if_match=None))
    assert [r["state"]["registrationId"] for r in emulator.dps.state.registrations()] == ["lone-1"]


def test_reregistration_keeps_the_device_when_migrating(emulator):
    rid = "again-1"
    c = RawDps(emulator, rid, token(emulator, rid, group_key(rid)))
    first = c.provision(rid)["registrationState"]
    generation = emulator.registry.get(rid)["generationId"]
    second = c.provision(rid)["registrationState"]
    c.close()
    assert second["substatus"] == "initialAssignment" and second["deviceId"] == first["deviceId"]
    assert emulator.registry.get(rid)["generationId"] == generation


def test_throttling_answers_429_with_retry_after():
    with EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, dps_registrations_per_minute=2, dps_assigning_polls=0) as emu:
        c = RawDps(emu, "busy-1", token(emu, "busy-1", group_key("busy-1")))
        statuses = [c.register("busy-1", request_id=str(i))[0] for i in range(3)]
        c.close()
    assert [t.split("/")[3] for t in statuses] == ["200", "200", "429"]
    assert "&retry-after=" in statuses[2]


class _Webhook:
    """A local custom-allocation webhook (plain HTTP on loopback) that records its requests."""

    def __init__(self, answer: dict | None, status: int = 200) -> None:
        import http.server

        self.requests: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/allocate?code=abc"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_custom_allocation_webhook_returns_payload_and_twin(emulator_thread, emulator):
    hook = _Webhook({"iotHubHostName": emulator.host, "payload": {"config": "blue"}, "initialTwin": {"tags": {"by": "hook"}}})
    try:
        custom = {"webhookUrl": hook.url, "apiVersion": "2019-03-31"}
        enrollment = individual(emulator_thread, "custom-1", allocationPolicy="custom", customAllocationDefinition=custom)
        c = RawDps(emulator, "custom-1", token(emulator, "custom-1", enrollment["attestation"]["symmetricKey"]["primaryKey"]))
        done = c.provision("custom-1", {"registrationId": "custom-1", "payload": {"model": "x1"}})
        c.close()
    finally:
        hook.close()
    assert done["registrationState"]["payload"] == {"config": "blue"}
    [request] = hook.requests
    assert request["deviceRuntimeContext"]["registrationId"] == "custom-1"
    assert request["deviceRuntimeContext"]["payload"] == {"model": "x1"}
    assert request["individualEnrollment"]["registrationId"] == "custom-1" and request["linkedHubs"] == [emulator.host]
    assert emulator.hub.twins.get(("custom-1", None))["tags"] == {"by": "hook"}


def test_failing_webhook_fails_the_registration(emulator_thread, emulator):
    hook = _Webhook({"error": "no"}, status=500)
    try:
        custom = {"webhookUrl": hook.url, "apiVersion": "2019-03-31"}
        enrollment = individual(emulator_thread, "custom-2", allocationPolicy="custom", customAllocationDefinition=custom)
        c = RawDps(emulator, "custom-2", token(emulator, "custom-2", enrollment["attestation"]["symmetricKey"]["primaryKey"]))
        done = c.provision("custom-2")
        c.close()
    finally:
        hook.close()
    state = done["registrationState"]
    assert done["status"] == "failed" and state["errorCode"] == 400209
    assert state["errorMessage"] == "Custom allocation failed with status code: 500"


# ---- refusals at CONNECT ------------------------------------------------------------------------


def _connack(emu, rid, password=None, **kw):
    c = RawDps(emu, rid, password, subscribe=False, **kw)
    c.close()
    return c.connack


def test_connect_refusals(emulator):
    rid = "refused-1"
    good = group_key(rid)
    assert _connack(emulator, rid, token(emulator, rid, good)) == 0
    assert _connack(emulator, rid, token(emulator, rid, group_key("someone-else"))) == 5  # wrong key
    assert _connack(emulator, rid, token(emulator, "someone-else", good)) == 5  # another registration
    assert _connack(emulator, rid, token(emulator, rid, good, ttl=-5)) == 5  # expired
    assert _connack(emulator, rid, token(emulator, rid, good, skn=None)) == 0  # no skn: the Python SDK sends none
    assert _connack(emulator, rid, token(emulator, rid, good, skn="device")) == 5  # another key name
    assert _connack(emulator, rid, None) == 5  # no credentials at all
    unknown_key = "HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4="
    assert _connack(emulator, "nobody-1", token(emulator, "nobody-1", unknown_key)) == 5  # unknown registration
    assert _connack(emulator, rid, token(emulator, rid, good), user=username(emulator, rid, "0ne99999999")) == 5  # scope
    assert _connack(emulator, rid, token(emulator, rid, good), client_id="other") == 2  # client id
    assert _connack(emulator, "bad.", token(emulator, "bad.", group_key("bad."))) == 2  # naming rules


def test_x509_connect_refusals(emulator, tmp_path):
    assert _connack(emulator, "cn-1", cert=emulator.pki.issue_device_cert("cn-2"), tmp_path=tmp_path / "a") == 5
    assert _connack(emulator, "cn-1", cert=DevPKI.generate().issue_device_cert("cn-1"), tmp_path=tmp_path / "b") == 5
    assert _connack(emulator, "cn-1", cert=self_signed_cert("cn-1"), tmp_path=tmp_path / "c") == 5


def test_hub_token_on_a_dps_username_and_the_reverse(emulator):
    hub_token = sas.generate(f"{emulator.host}/devices/device1", emulator.registry.get("device1")["authentication"]["symmetricKey"]["primaryKey"])
    assert _connack(emulator, "device1", hub_token) == 5
    assert _hub_connack(emulator, "device1", token(emulator, "device1", group_key("device1"))) == 5


# ---- the Embedded C SDK's register request: no body -------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"{}", b'{"registrationId": "emb-c-1"}'], ids=["empty", "empty object", "id only"])
def test_embedded_sdk_register_without_a_payload(emulator, body):
    """The packets az_iot_provisioning_client makes: username without ClientVersion, QoS 0
    requests, `$rid=1` for every request, an empty register body when there is no payload."""
    rid = "emb-c-1"
    c = RawClient(emulator)
    c.send(connect_packet(rid, f"{emulator.config.dps_id_scope}/registrations/{rid}/api-version=2019-03-31", token(emulator, rid, group_key(rid))))
    assert c.connack() == 0
    c.send(subscribe_packet([("$dps/registrations/res/#", 1)], packet_id=1))
    assert c.read_packet() == (9, 0, b"\x00\x01\x01")
    c.send(publish_packet(REGISTER.format(1), body, qos=0))
    topic, answer = _answer(c)
    assert topic == "$dps/registrations/res/202/?$rid=1&retry-after=3" and answer["status"] == "assigning"
    c.send(publish_packet(POLL.format(1, answer["operationId"]), b"", qos=0))
    topic, done = _answer(c)
    c.close()
    assert topic == "$dps/registrations/res/200/?$rid=1"
    assert done["status"] == "assigned" and done["registrationState"]["deviceId"] == rid
    assert "payload" not in done["registrationState"]
    assert emulator.registry.get(rid) is not None


def _answer(c: RawClient) -> tuple[str, dict]:
    kind, flags, raw = c.read_packet()
    assert kind == 3
    topic, payload = decode_publish(flags, raw)
    c.send(bytes([0x40, 2]) + raw[2 + int.from_bytes(raw[:2], "big") :][:2])  # PUBACK (QoS 1)
    return topic, json.loads(payload)


# ---- refusals of requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, status, code",
    [
        (b"{not json", 400, 400006),
        (b"\0", 400, 400006),
        (json.dumps({"registrationId": "someone-else"}).encode(), 400, 400004),
        (json.dumps({"registrationId": "req-1", "tpm": {"endorsementKey": "AAAA"}}).encode(), 400, 400004),
    ],
)
def test_bad_register_requests(emulator, body, status, code):
    c = RawDps(emulator, "req-1", token(emulator, "req-1", group_key("req-1")))
    topic, answer = c.register("req-1", body, request_id="9")
    c.close()
    assert topic == f"$dps/registrations/res/{status}/?$rid=9"
    assert answer["errorCode"] == code and set(answer) == {"errorCode", "trackingId", "message", "timestampUtc"}


def test_poll_for_an_unknown_operation(emulator):
    c = RawDps(emulator, "req-2", token(emulator, "req-2", group_key("req-2")))
    topic, answer = c.poll("5.0000000000000000.00000000-0000-0000-0000-000000000000", request_id="4")
    c.close()
    assert topic == "$dps/registrations/res/404/?$rid=4" and answer["errorCode"] == 404204


def test_poll_for_another_registrations_operation(emulator):
    a = RawDps(emulator, "req-3", token(emulator, "req-3", group_key("req-3")))
    _, accepted = a.register("req-3")
    a.close()
    b = RawDps(emulator, "req-4", token(emulator, "req-4", group_key("req-4")))
    topic, _ = b.poll(accepted["operationId"])
    b.close()
    assert topic.startswith("$dps/registrations/res/404/")


def test_enrollment_deleted_after_connect_is_unauthorized_at_register(emulator_thread, emulator):
    enrollment = individual(emulator_thread, "gone-1")
    c = RawDps(emulator, "gone-1", token(emulator, "gone-1", enrollment["attestation"]["symmetricKey"]["primaryKey"]))
    emulator_thread.call(emulator.dps.delete_enrollment("individual", "gone-1", if_match=None))
    topic, answer = c.register("gone-1")
    c.close()
    assert topic.startswith("$dps/registrations/res/401/") and answer["errorCode"] == 401002


@pytest.mark.parametrize(
    "packet",
    [
        publish_packet("devices/req-5/messages/events/", b"{}"),  # telemetry on a DPS connection
        subscribe_packet([("$iothub/twin/res/#", 1)]),
        publish_packet("$dps/registrations/PUT/iotdps-register/?$rid=1", b"{}", qos=2),
    ],
)
def test_hub_traffic_on_a_dps_connection_closes_it(emulator, packet):
    c = RawDps(emulator, "req-5", token(emulator, "req-5", group_key("req-5")), subscribe=False)
    c.client.send(packet)
    assert c.client.closed_by_server()


def test_register_on_a_hub_connection_closes_it(emulator):
    from tests.helpers import raw_sas_connect

    c = raw_sas_connect(emulator, "device1")
    c.send(publish_packet(REGISTER.format(1), json.dumps({"registrationId": "device1"}).encode()))
    assert c.closed_by_server()


def test_answers_need_a_subscription(emulator, caplog):
    caplog.set_level(logging.WARNING, logger="azure_iot_harness")
    c = RawDps(emulator, "quiet-1", token(emulator, "quiet-1", group_key("quiet-1")), subscribe=False)
    c.client.send(publish_packet(REGISTER.format(1), json.dumps({"registrationId": "quiet-1"}).encode(), packet_id=3))
    assert c.client.read_packet()[0] == 4  # PUBACK, and nothing after it:
    wait_for(lambda: any("quiet-1: not subscribed to" in m and "dropped" in m for m in caplog.messages),
             what="DPS dropping the answer", seen=lambda: caplog.messages[-3:])
    c.client.send(bytes([0xC0, 0]))  # PINGREQ: its PINGRESP is the next packet, no answer before it
    assert c.client.read_packet()[0] == 13
    c.close()


def test_a_second_connection_with_the_same_client_id_closes_the_first(emulator):
    key = group_key("twice-1")
    first = RawDps(emulator, "twice-1", token(emulator, "twice-1", key))
    second = RawDps(emulator, "twice-1", token(emulator, "twice-1", key))
    assert first.connack == 0 and second.connack == 0
    assert first.client.closed_by_server()
    assert second.provision("twice-1")["status"] == "assigned"
