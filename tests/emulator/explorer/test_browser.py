"""The explorer page in a real browser against a running emulator, with paho devices on the
other side: what a device does shows on the page, and what the page does reaches the device.
Certification reports come from real certify runs with device programs."""

from __future__ import annotations

import json
import re
import struct
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
from playwright.sync_api import Browser, Page, expect

from azure_iot_harness.certs import self_signed_cert
from azure_iot_harness.emulator.app import Emulator, EmulatorThread
from azure_iot_harness.emulator.certification_api import PATH as REPORTS
from azure_iot_harness.emulator.protocol import sas
from tests.certify.helpers import broken_command, certify, explain, reference_command, results
from tests.emulator.dps.helpers import group_key
from tests.emulator.edge.edge_helpers import connected_leaf
from tests.emulator.explorer.conftest import open_page
from tests.helpers import PahoDevice, https, packet, raw_sas_connect, sas_device, subscribe_packet, wait_for


def new_device(thread: EmulatorThread, device_id: str, **body: object) -> dict:
    return thread.call(thread.emulator.registry.put_device({"deviceId": device_id, **body}, if_match=None))


def online(emu: Emulator, device_id: str, *subscriptions: str) -> PahoDevice:
    device = sas_device(emu, device_id)
    assert device.connect() == 0
    for topic in subscriptions:
        result, mid = device.client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
    if subscriptions:
        wait_for(lambda: emu.hub.sessions.get((device_id, None)) is not None
                 and all(t in emu.hub.sessions.get((device_id, None)).state.subscriptions for t in subscriptions),
                 what="the subscriptions")  # fmt: skip
    return device


# ---- devices and modules --------------------------------------------------------------------


def test_devices_page_shows_live_state_and_creates_disables_deletes(page: Page, explorer_thread: EmulatorThread) -> None:
    emu = explorer_thread.emulator
    page.goto("/devices")
    page.fill("#new-device-id", "page-made")
    page.click("#create-device button[type=submit]")
    row = page.locator("tr[data-device-id='page-made']")
    expect(row.locator(".connection")).to_have_text("Disconnected")
    expect(row.locator(".auth")).to_have_text("symmetric key")
    expect(row.locator(".activity")).to_have_text("never")
    assert emu.registry.get("page-made")["authentication"]["type"] == "sas"

    device = online(emu, "page-made")
    try:
        expect(row.locator(".connection")).to_have_text("Connected")
        expect(row.locator(".activity")).not_to_have_text("never")
        explorer_thread.call(emu.send_c2d("page-made", "waiting"))
        expect(row.locator(".c2d")).to_have_text("1")
    finally:
        device.close()
    expect(row.locator(".connection")).to_have_text("Disconnected")

    row.locator("button.copy").click()
    expect(page.locator("#copied-connection-string")).to_have_value(emu.connection_string(device="page-made"))

    row.locator("button.toggle").click()
    expect(row.locator(".status")).to_have_text("disabled")
    assert emu.registry.get("page-made")["status"] == "disabled"
    refused = sas_device(emu, "page-made")
    try:
        assert refused.connect() == 3  # a disabled device is refused (server unavailable), as IoT Hub does
    finally:
        refused.close()

    row.locator("button.delete").click()
    expect(row).to_have_count(0)
    assert emu.registry.get("page-made") is None


def test_device_page_shows_connection_string_thumbprints_and_modules(page: Page, explorer_thread: EmulatorThread) -> None:
    emu = explorer_thread.emulator
    cert = self_signed_cert("thumb-dev")
    page.goto("/devices")
    page.fill("#new-device-id", "thumb-dev")
    page.select_option("#new-device-auth", "selfSigned")
    page.fill("#new-device-thumbprint1", cert.sha1_thumbprint)
    page.click("#create-device button[type=submit]")
    page.locator("tr[data-device-id='thumb-dev'] a").click()
    expect(page.locator("#thumbprints")).to_contain_text(cert.sha1_thumbprint)
    expect(page.locator("#connection-string")).to_have_value("HostName=localhost;DeviceId=thumb-dev;x509=true")
    expect(page.locator("#identity-auth")).to_have_text("X.509 self-signed")

    page.fill("#new-module-id", "mod-a")
    page.click("#create-module button[type=submit]")
    module_row = page.locator("tr[data-module-id='mod-a']")
    expect(module_row).to_contain_text("Disconnected")
    module = sas_device(emu, "thumb-dev", "mod-a")
    assert module.connect() == 0
    try:
        expect(module_row).to_contain_text("Connected")  # live, as the devices' state
        expect(module_row).not_to_contain_text("Disconnected")
    finally:
        module.close()
    module_row.locator("a").click()
    expect(page).to_have_url(re.compile(r"/devices/thumb-dev/modules/mod-a$"))
    key = emu.registry.get("thumb-dev", "mod-a")["authentication"]["symmetricKey"]["primaryKey"]
    expected = f"HostName=localhost;DeviceId=thumb-dev;ModuleId=mod-a;SharedAccessKey={key}"
    expect(page.locator("#connection-string")).to_have_value(expected)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#copy-connection-string")
    assert wait_for(lambda: page.evaluate("navigator.clipboard.readText()") == expected, what="the connection string on the clipboard")
    page.click("#delete-identity")  # the module's, from its page
    expect(page).to_have_url(re.compile(r"/devices/thumb-dev$"))
    expect(page.locator("tr[data-module-id='mod-a']")).to_have_count(0)
    assert emu.registry.get("thumb-dev", "mod-a") is None
    page.goto("/devices")
    expect(page.locator("tr[data-device-id='thumb-dev'] .modules")).to_have_text("0")
    expect(page.locator("tr[data-device-id='device1'] .modules")).to_have_text("1")  # the well-known module1


# ---- telemetry ------------------------------------------------------------------------------


def test_telemetry_from_a_device_appears_pretty_with_properties_pause_and_filter(page: Page, explorer_thread: EmulatorThread) -> None:
    emu = explorer_thread.emulator
    new_device(explorer_thread, "tele-dev")
    device = online(emu, "tele-dev")
    try:
        page.goto("/telemetry?deviceId=tele-dev")
        expect(page.locator("#telemetry-state")).to_have_text("live")
        topic = "devices/tele-dev/messages/events/$.ct=application%2Fjson&$.ce=utf-8&color=red"
        device.publish(topic, json.dumps({"temperature": 21.5, "unit": "C"}))
        card = page.locator("#telemetry-list li").first
        expect(card.locator("pre.body")).to_have_text('{\n  "temperature": 21.5,\n  "unit": "C"\n}')
        expect(card).to_contain_text("color")
        expect(card).to_contain_text("red")
        expect(card.locator("details").nth(1)).to_contain_text("iothub-connection-device-id")
        expect(card.locator(".meta")).to_contain_text("enqueued")
        expect(page.locator("#rate-graph canvas")).to_have_count(1)
        expect(page.locator("#rate-graph")).to_have_attribute("data-last-minute", "1")

        page.click("#telemetry-pause")
        device.publish("devices/tele-dev/messages/events/color=blue", "held back")
        expect(page.locator("#telemetry-held")).to_have_text("1")
        expect(page.locator("#telemetry-list li")).to_have_count(1)
        page.click("#telemetry-pause")
        expect(page.locator("#telemetry-list li")).to_have_count(2)
        expect(page.locator("#telemetry-list li").first.locator("pre.body")).to_have_text("held back")

        page.fill("#telemetry-filter", "blue")
        expect(page.locator("#telemetry-list li:visible")).to_have_count(1)
        device.publish("devices/tele-dev/messages/events/color=green", "not shown")
        device.publish("devices/tele-dev/messages/events/color=blue", "shown too")
        expect(page.locator("#telemetry-count")).to_have_text("4")
        expect(page.locator("#telemetry-list li:visible")).to_have_count(2)
    finally:
        device.close()


def test_telemetry_of_all_devices_names_each_sender(page: Page, explorer_thread: EmulatorThread) -> None:
    emu = explorer_thread.emulator
    new_device(explorer_thread, "all-a")
    new_device(explorer_thread, "all-b")
    a, b = online(emu, "all-a"), online(emu, "all-b")
    try:
        page.goto("/telemetry")
        expect(page.locator("#telemetry-state")).to_have_text("live")
        a.publish("devices/all-a/messages/events/", "from a")
        b.publish("devices/all-b/messages/events/", "from b")
        expect(page.locator("#telemetry-list li[data-device-id='all-a']")).to_have_count(1)
        expect(page.locator("#telemetry-list li[data-device-id='all-b']")).to_have_count(1)
    finally:
        a.close()
        b.close()


# ---- twin -----------------------------------------------------------------------------------


def test_desired_change_on_the_page_reaches_the_device_and_a_conflict_is_shown(page: Page, explorer_thread: EmulatorThread) -> None:
    emu = explorer_thread.emulator
    new_device(explorer_thread, "twin-dev")
    device = online(emu, "twin-dev", "$iothub/twin/PATCH/properties/desired/#", "$iothub/twin/res/#")
    try:
        device.publish("$iothub/twin/PATCH/properties/reported/?$rid=1", json.dumps({"firmware": "1.2.3"}))
        page.goto("/devices/twin-dev")
        expect(page.locator("#twin-reported")).to_contain_text('"firmware": "1.2.3"')

        page.fill("#twin-desired", json.dumps({"interval": 5, "mode": "eco"}))
        page.fill("#twin-tags", json.dumps({"site": "lab"}))
        page.click("#twin-save")
        expect(page.locator("#twin-status")).to_contain_text("saved")
        patch = wait_for(lambda: next((m for m in device.messages if m.topic.startswith("$iothub/twin/PATCH/properties/desired/")), None))
        assert {k: v for k, v in json.loads(patch.payload).items() if k != "$version"} == {"interval": 5, "mode": "eco"}
        assert emu.hub.twins.view(("twin-dev", None))["tags"] == {"site": "lab"}

        # Someone else changes the twin while the page edits it: the save is refused, not lost.
        page.fill("#twin-desired", json.dumps({"interval": 10}))
        status, _, _ = https(emu, "PATCH", "/twins/twin-dev?api-version=2021-04-12", {"properties": {"desired": {"mode": "boost"}}})
        assert status == 200
        page.click("#twin-save")
        error = page.locator("#twin-error")
        expect(error).to_contain_text("412 PreconditionFailed")
        expect(error).to_contain_text("desired $version 2 → 3")
        assert emu.hub.twins.view(("twin-dev", None))["properties"]["desired"]["interval"] == 5
        page.click("#twin-reload")
        expect(page.locator("#twin-desired")).to_have_value(re.compile('"mode": "boost"'))
        expect(error).to_be_hidden()
    finally:
        device.close()


# ---- direct methods -------------------------------------------------------------------------


def test_method_invoked_on_the_page_is_answered_by_the_device(page: Page, explorer_thread: EmulatorThread) -> None:
    emu = explorer_thread.emulator
    new_device(explorer_thread, "method-dev")
    device = online(emu, "method-dev", "$iothub/methods/POST/#")
    calls: list[tuple[str, bytes]] = []

    def answer(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        calls.append((msg.topic, msg.payload))
        rid = urllib.parse.parse_qs(msg.topic.split("?", 1)[1])["$rid"][0]
        client.publish(f"$iothub/methods/res/200/?$rid={rid}", json.dumps({"rebooting": True, "got": json.loads(msg.payload)}), qos=1)

    device.client.on_message = answer
    try:
        page.goto("/devices/method-dev")
        page.fill("#method-name", "reboot")
        page.fill("#method-payload", '{"delay": 3}')
        page.click("#method-invoke")
        result = page.locator("#method-result")
        expect(result).to_contain_text("status 200")
        expect(result).to_contain_text('"rebooting": true')
        expect(result).to_contain_text('"delay": 3')
        assert calls[0][0].startswith("$iothub/methods/POST/reboot/")
        assert json.loads(calls[0][1]) == {"delay": 3}
    finally:
        device.close()


def test_method_timeout_is_shown(page: Page, explorer_thread: EmulatorThread) -> None:
    emu = explorer_thread.emulator
    new_device(explorer_thread, "silent-dev")
    device = online(emu, "silent-dev", "$iothub/methods/POST/#")  # subscribed, never answers
    try:
        page.goto("/devices/silent-dev")
        page.fill("#method-name", "noanswer")
        page.fill("#method-response-timeout", "5")
        page.click("#method-invoke")
        expect(page.locator("#method-error")).to_contain_text("504 GatewayTimeout", timeout=20_000)
        expect(page.locator("#method-result")).to_be_hidden()
    finally:
        device.close()


def test_method_waits_for_an_offline_device_up_to_the_connect_timeout(page: Page, explorer_thread: EmulatorThread) -> None:
    emu = explorer_thread.emulator
    new_device(explorer_thread, "late-dev")
    page.goto("/devices/late-dev")
    page.fill("#method-name", "wake")
    page.fill("#method-payload", '"now"')
    page.fill("#method-connect-timeout", "60")
    page.fill("#method-response-timeout", "30")
    page.click("#method-invoke")
    expect(page.locator("#method-status")).to_have_text("waiting for the device…")
    device = sas_device(emu, "late-dev")  # comes online while the hub waits for it
    device.client.on_message = lambda c, u, msg: c.publish(
        "$iothub/methods/res/201/?$rid=" + urllib.parse.parse_qs(msg.topic.split("?", 1)[1])["$rid"][0], '{"awake": true}', qos=1
    )
    assert device.connect() == 0
    try:
        device.client.subscribe("$iothub/methods/POST/#", qos=1)
        expect(page.locator("#method-result")).to_contain_text("status 201")
        expect(page.locator("#method-result")).to_contain_text('"awake": true')
        expect(page.locator("#method-error")).to_be_hidden()
    finally:
        device.close()


# ---- cloud-to-device ------------------------------------------------------------------------


def test_c2d_sent_on_the_page_arrives_and_its_state_shows(page: Page, explorer_thread: EmulatorThread) -> None:
    emu = explorer_thread.emulator
    new_device(explorer_thread, "c2d-dev")
    received: list[mqtt.MQTTMessage] = []
    # IoT Hub delivers what is enqueued after the subscription: the device subscribes, goes away.
    online(emu, "c2d-dev", "devices/c2d-dev/messages/devicebound/#").close()
    page.goto("/devices/c2d-dev")
    page.fill("#c2d-body", "open the valve")
    page.fill("#c2d-properties", "valve=3\npriority=high")
    page.fill("#c2d-message-id", "msg-1")
    page.select_option("#c2d-ack", "full")
    page.click("#c2d-send")
    row = page.locator("#c2d-messages tr[data-message-id='msg-1']")
    expect(row.locator(".state")).to_have_text("queued")
    expect(page.locator("#identity-c2d")).to_have_text("1")

    device = sas_device(emu, "c2d-dev")  # its persistent session still holds the subscription
    device.client.on_message = lambda c, u, msg: received.append(msg)
    assert device.connect() == 0
    try:
        wait_for(lambda: received, what="the C2D message at the device")
        assert received[0].payload == b"open the valve"
        assert "valve=3" in received[0].topic and "priority=high" in received[0].topic and "%24.mid=msg-1" in received[0].topic
        expect(row.locator(".state")).to_have_text("acknowledged")  # paho sent the PUBACK
        expect(page.locator("#identity-c2d")).to_have_text("0")
    finally:
        device.close()

    page.fill("#c2d-body", "too late")
    page.fill("#c2d-properties", "")
    page.fill("#c2d-message-id", "msg-2")
    page.fill("#c2d-ttl", "1")
    page.click("#c2d-send")
    expect(page.locator("#c2d-messages tr[data-message-id='msg-2'] .state")).to_have_text("expired")


def test_c2d_shows_delivered_until_the_device_acknowledges(page: Page, explorer_thread: EmulatorThread) -> None:
    emu = explorer_thread.emulator
    new_device(explorer_thread, "c2d-slow")
    device = raw_sas_connect(emu, "c2d-slow")  # hand-made MQTT: it PUBACKs when the test says so
    try:
        device.send(subscribe_packet([("devices/c2d-slow/messages/devicebound/#", 1)]))
        assert device.read_packet() is not None  # SUBACK
        page.goto("/devices/c2d-slow")
        page.fill("#c2d-body", "take your time")
        page.fill("#c2d-message-id", "slow-1")
        page.click("#c2d-send")
        kind, flags, body = wait_for(lambda: device.read_packet(), what="the C2D PUBLISH")
        assert (kind, (flags >> 1) & 3) == (3, 1)
        topic_length = struct.unpack("!H", body[:2])[0]
        assert body[2 + topic_length + 2 :] == b"take your time"
        state = page.locator("#c2d-messages tr[data-message-id='slow-1'] .state")
        expect(state).to_have_text("delivered, awaiting ack")
        device.send(packet(4, 0, body[2 + topic_length : 4 + topic_length]))  # PUBACK
        expect(state).to_have_text("acknowledged")
    finally:
        device.close()


# ---- DPS and edge ---------------------------------------------------------------------------


def test_dps_page_shows_enrollments_groups_and_registration_records(page: Page, explorer_thread: EmulatorThread) -> None:
    emu = explorer_thread.emulator
    enrolled = explorer_thread.call(emu.dps.put_enrollment("individual", "enrolled-1", {"attestation": {"type": "symmetricKey"}}, if_match=None))
    explorer_thread.call(emu.dps.put_enrollment("individual", "waiting-1", {"attestation": {"type": "symmetricKey"}}, if_match=None))
    scope = emu.config.dps_id_scope
    for rid, key in (("grouped-1", group_key("grouped-1")), ("enrolled-1", enrolled["attestation"]["symmetricKey"]["primaryKey"])):
        token = sas.generate(f"{scope}/registrations/{rid}", key, key_name="registration")
        status, _, body = https(emu, "PUT", f"/{scope}/registrations/{rid}/register?api-version=2021-06-01", {"registrationId": rid}, token=token)
        assert status in (200, 202), body
    page.goto("/dps")
    expect(page.locator("#dps-enrollments tr[data-id='enrolled-1']")).to_contain_text("symmetricKey")
    expect(page.locator("#dps-groups tr[data-id='symmetric-group1']")).to_contain_text("symmetricKey")
    expect(page.locator("#dps-groups tr[data-id='x509-group1']")).to_contain_text("x509")
    record = page.locator("#dps-registrations tr[data-id='grouped-1']")
    expect(record).to_contain_text("group symmetric-group1")
    expect(record).to_contain_text("assigned")
    expect(record).to_contain_text("localhost")
    individual = page.locator("#dps-registrations tr[data-id='enrolled-1']")
    expect(individual).to_contain_text("individual")
    expect(individual).to_contain_text("assigned")
    expect(page.locator("#dps-enrollments tr[data-id='waiting-1']")).to_contain_text("symmetricKey")
    expect(page.locator("#dps-registrations tr[data-id='waiting-1']")).to_have_count(0)  # enrolled, never registered


def test_edge_page_shows_routes_queues_and_upstream(page: Page, explorer_thread: EmulatorThread) -> None:
    emu = explorer_thread.emulator
    leaf = connected_leaf(explorer_thread, emu, "edge-leaf")
    try:
        leaf.publish("devices/edge-leaf/messages/events/", "through the gateway")
        page.goto("/edge")
        expect(page.locator("#edge-upstream-state")).to_have_text("online")
        expect(page.locator("#edge-routes")).to_contain_text("FROM /* INTO $upstream")
        explorer_thread.call(emu.suspend_hub())
        try:
            leaf.publish("devices/edge-leaf/messages/events/", "kept while the hub is away")
            expect(page.locator("#edge-queues tr[data-endpoint='$upstream'] .depth")).to_have_text("1")
            expect(page.locator("#edge-upstream-state")).not_to_have_text("online")
        finally:
            explorer_thread.call(emu.resume_hub())
        expect(page.locator("#edge-queues tr[data-endpoint='$upstream'] .depth")).to_have_text("0", timeout=30_000)
        expect(page.locator("#edge-error")).to_be_hidden()
    finally:
        leaf.close()


def test_edge_page_shows_each_endpoints_queue_and_a_refused_route(page: Page, explorer_thread: EmulatorThread) -> None:
    emu = explorer_thread.emulator
    _, _, before = https(emu, "GET", "/_emulator/edge/routes")
    routes = {
        "up": "FROM /* INTO $upstream",
        "alarms": 'FROM /messages/* INTO BrokeredEndpoint("/modules/alarms/inputs/in1")',  # a module never connected
        "typo": "FROM /messages/* INTO $upstreams",
    }
    status, _, answer = https(emu, "PUT", "/_emulator/edge/routes", {"schemaVersion": "1.1", "routes": routes})
    assert status == 200 and list(answer["errors"]) == ["typo"], answer
    leaf = connected_leaf(explorer_thread, emu, "edge-leaf-2")
    try:
        page.goto("/edge")
        mid = leaf.publish("devices/edge-leaf-2/messages/events/", "for the alarms module")
        wait_for(lambda: mid in leaf.acked, what="the edge's PUBACK")
        expect(page.locator("#edge-queues tr[data-endpoint='/modules/alarms/inputs/in1'] .depth")).to_have_text("1")
        expect(page.locator("#edge-queues tr[data-endpoint='$upstream'] .depth")).to_have_text("0")  # forwarded at once
        expect(page.locator("#edge-routes tr[data-route='alarms']")).to_contain_text('BrokeredEndpoint("/modules/alarms/inputs/in1")')
        refused = page.locator("#edge-routes tr[data-route='typo']")
        expect(refused).to_contain_text("refused")
        expect(refused).to_contain_text(answer["errors"]["typo"])
    finally:
        leaf.close()
        https(emu, "PUT", "/_emulator/edge/routes", {"schemaVersion": "1.1", "routes": before["routes"]})


# ---- faults and the packet trace ------------------------------------------------------------


def test_a_fault_started_on_the_page_fires_and_the_trace_shows_the_connection(page: Page, explorer_thread: EmulatorThread) -> None:
    emu = explorer_thread.emulator
    new_device(explorer_thread, "fault-dev")
    page.goto("/faults?deviceId=fault-dev")
    page.select_option("#fault-kind", "refuse-connect")
    expect(page.locator("#fault-imitates")).to_contain_text("CONNACK")
    page.select_option("#fault-params select[data-param='code']", "5")
    page.fill("#fault-count", "1")
    page.click("#fault-add")
    row = page.locator("#fault-table tr[data-kind='refuse-connect']")
    expect(row).to_contain_text("fault-dev")
    expect(row).to_contain_text("code=5")
    [fault] = [f for f in emu.faults.list() if f.kind == "refuse-connect"]
    assert (fault.device_id, fault.count, fault.params) == ("fault-dev", 1, {"code": 5})

    page.click("#trace-follow")
    expect(page.locator("#trace-state")).to_have_text("live")
    refused = sas_device(emu, "fault-dev")
    try:
        assert refused.connect() == 5  # the page's fault fired
    finally:
        refused.close()
    expect(row).to_have_count(0)  # used up
    trace = page.locator("#trace-table")
    expect(trace.locator("tr[data-type='FAULT']")).to_have_count(1)
    expect(trace.locator("tr[data-type='CONNACK'] .details")).to_contain_text("code 5")
    device = online(emu, "fault-dev")
    device.close()
    expect(trace.locator("tr[data-type='CONNACK'] .details").first).to_contain_text("code 0")

    # One connection's packets: its number filters the trace to it.
    trace.locator("tr[data-type='FAULT'] td:nth-child(3) a").click()
    expect(trace.locator("tr[data-type='CONNECT']")).to_have_count(1)
    expect(trace.locator("tr[data-type='CONNACK'] .details")).to_contain_text("code 5")

    page.select_option("#fault-kind", "delay-twin")
    page.fill("#fault-params input[data-param='seconds']", "-1")
    page.click("#fault-add")
    expect(page.locator("#faults-error")).to_contain_text("400 ArgumentInvalid")
    page.fill("#fault-params input[data-param='seconds']", "2")
    page.click("#fault-add")
    expect(page.locator("#fault-table tr[data-kind='delay-twin']")).to_have_count(1)
    page.click("#faults-clear")
    expect(page.locator("#fault-table tbody tr")).to_have_count(0)
    assert emu.faults.list() == []


# ---- beyond loopback ------------------------------------------------------------------------


def test_beyond_loopback_the_page_asks_for_the_iothubowner_connection_string(browser: Browser) -> None:
    thread = EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, explorer=True, explorer_bind="0.0.0.0")
    emu = thread.start()
    try:
        with open_page(browser, emu) as page:
            page.goto("/devices")
            expect(page).to_have_url(re.compile(r"/login$"))
            expect(page.locator("nav")).to_have_count(0)
            page.fill("#connection-string-input", emu.connection_string(policy="service"))  # not the owner's
            page.click("form button[type=submit]")
            expect(page.locator("[role=alert]")).to_contain_text("not this hub's iothubowner connection string")
            page.goto("/certification")
            expect(page).to_have_url(re.compile(r"/login$"))  # every page, not only the first

            page.fill("#connection-string-input", emu.connection_string(policy="iothubowner"))
            page.click("form button[type=submit]")
            expect(page).to_have_url(re.compile(r"/devices$"))
            expect(page.locator("tr[data-device-id='device1'] .connection")).to_have_text("Disconnected")
            expect(page.locator("#devices-error")).to_be_hidden()
            page.goto("/certification")
            expect(page.locator("#certification-empty")).to_be_visible()  # signed in, and no runs yet

            page.click("form.signout button")
            expect(page).to_have_url(re.compile(r"/login$"))
            page.goto("/devices")
            expect(page).to_have_url(re.compile(r"/login$"))
    finally:
        thread.stop()


# ---- errors ---------------------------------------------------------------------------------


def test_bad_actions_show_azures_error_and_the_page_keeps_working(page: Page, explorer_thread: EmulatorThread) -> None:
    emu = explorer_thread.emulator
    new_device(explorer_thread, "bad-dev")
    page.goto("/devices")
    page.fill("#new-device-id", "device1")
    page.click("#create-device button[type=submit]")
    expect(page.locator("#devices-error")).to_contain_text("409 DeviceAlreadyExists")

    page.goto("/devices/bad-dev")
    page.fill("#method-name", "reboot")
    page.fill("#method-payload", "{}")
    page.click("#method-invoke")
    expect(page.locator("#method-error")).to_contain_text("404 DeviceNotOnline")

    page.fill("#twin-desired", json.dumps({"bad key": 1}))
    page.click("#twin-save")
    expect(page.locator("#twin-error")).to_contain_text("400 ArgumentInvalid")
    expect(page.locator("#twin-error")).to_contain_text("may not contain")

    # The page goes on: the same sections work after their errors.
    page.fill("#twin-desired", json.dumps({"good": 1}))
    page.click("#twin-save")
    expect(page.locator("#twin-error")).to_be_hidden()
    assert emu.hub.twins.view(("bad-dev", None))["properties"]["desired"]["good"] == 1
    device = online(emu, "bad-dev", "$iothub/methods/POST/#")
    device.client.on_message = lambda c, u, msg: c.publish(
        "$iothub/methods/res/200/?$rid=" + urllib.parse.parse_qs(msg.topic.split("?", 1)[1])["$rid"][0], "{}", qos=1
    )
    try:
        page.click("#method-invoke")
        expect(page.locator("#method-result")).to_contain_text("status 200")
        expect(page.locator("#method-error")).to_be_hidden()
    finally:
        device.close()

    page.goto("/edge")
    expect(page.locator("#edge-error")).to_be_hidden()


# ---- certification reports ------------------------------------------------------------------
# Real certify runs with real device programs: one on an emulator of its own over a data folder,
# one against the emulator running there; the page lists both, shows each report (certify's own
# page: the summary matrix and each check's evidence), and lists them after a restart.


@contextmanager
def explorer_on(data: Path, browser: Browser) -> Iterator[tuple[Emulator, Page]]:
    thread = EmulatorThread(data_dir=data, in_memory=False, mqtt_port=0, https_port=0, explorer=True, durability="normal")
    emu = thread.start()
    try:
        with open_page(browser, emu) as page:
            yield emu, page
    finally:
        thread.stop()


def test_certify_runs_are_listed_shown_and_kept(browser: Browser, tmp_path: Path) -> None:
    data = tmp_path / "data"
    # certify on an emulator of its own over the folder: a device that breaks the username rule.
    own: list[str] = []
    broken = certify(broken_command("bad_model_id"), "cert-broken", data_dir=str(data), checks=["connect.connects", "credentials.username"], lines=own)
    assert results(broken) == {"connect.connects": "PASS", "credentials.username": "FAIL"}, explain(broken)
    assert f"report stored in the emulator: {REPORTS}/1 (`azure-iot-harness serve --data-dir {data}` shows it in the explorer)" in own

    with explorer_on(data, browser) as (emu, page):
        page.goto("/certification")
        runs = page.locator("#certification-runs tbody tr")
        first = page.locator("#certification-runs tr[data-device-id='cert-broken']")
        expect(first.locator(".verdict")).to_have_text("NOT CERTIFIED")
        expect(first.locator(".profile")).to_have_text("basic")
        expect(first.locator(".counts")).to_have_text("1 PASS1 FAIL")
        expect(page.locator("#certification-empty")).to_be_hidden()

        # certify against the emulator running there: its run appears on the open page.
        lines: list[str] = []
        passed = certify(reference_command(), "cert-ref", use_running=True, data_dir=str(data),
                         checks=["connect.connects", "telemetry.publishes"], without=["twin"], lines=lines)  # fmt: skip
        assert passed.exit_code == 0, explain(passed)
        [stored] = [line for line in lines if line.startswith("report stored in the emulator: ")]
        assert re.fullmatch(re.escape(f"report stored in the emulator: {emu.explorer_url}certification/") + r"\d+", stored)
        second = page.locator("#certification-runs tr[data-device-id='cert-ref']")
        expect(second.locator(".verdict")).to_have_text("CERTIFIED")
        expect(second.locator(".counts")).to_have_text("2 PASS")
        expect(runs).to_have_count(2)
        expect(runs.first).to_have_attribute("data-device-id", "cert-ref")  # the newest first
        stored_id = stored.rsplit("/", 1)[1]
        assert https(emu, "GET", f"{REPORTS}/{stored_id}")[2] == json.loads(json.dumps(passed.to_json()))  # as certify made them
        assert https(emu, "GET", f"{REPORTS}/{stored_id}/html")[2] == passed.to_html()

        # One run: certify's own page, with its matrix and each check's evidence.
        second.locator("a").click()
        expect(page).to_have_url(stored.rsplit(": ", 1)[1])
        expect(page.locator("#report-verdict")).to_have_text("CERTIFIED")
        expect(page.locator("[data-fact='Device']")).to_have_text("cert-ref (sas, provisioning none)")
        report = page.frame_locator("#report-frame")
        expect(report.locator("h1")).to_contain_text("CERTIFIED: cert-ref, profile basic: 2 PASS")
        expect(report.locator("tr.PASS td.res")).to_have_count(2)
        evidence = report.locator("section[id='telemetry.publishes']")
        expect(evidence).to_contain_text("Trace excerpt")
        expect(evidence).to_contain_text("PUBLISH")

        page.goto("/certification")
        first.locator("a").click()
        expect(page.locator("#report-verdict")).to_have_text("NOT CERTIFIED")
        failed = report.locator("section[id='credentials.username']")
        expect(failed.locator("h2")).to_have_text("credentials.username — FAIL")
        expect(failed).to_contain_text(broken.result("credentials.username").message)
        report.locator("a[href='#credentials.username']").click()  # the matrix leads to the check's evidence
        expect(failed.locator("h2")).to_be_in_viewport()
        expect(report.locator("h1")).to_contain_text("NOT CERTIFIED: cert-broken")
        with page.expect_download() as download:
            page.click("#report-downloads button.download-json")
        assert json.loads(Path(download.value.path()).read_text()) == json.loads(json.dumps(broken.to_json()))

    # The runs are in the data folder: a restarted emulator lists them still.
    with explorer_on(data, browser) as (emu, page):
        page.goto("/certification")
        expect(page.locator("#certification-runs tbody tr")).to_have_count(2)
        page.locator("#certification-runs tr[data-device-id='cert-broken'] button.delete").click()
        expect(page.locator("#certification-runs tbody tr")).to_have_count(1)
        assert [r["deviceId"] for r in https(emu, "GET", REPORTS)[2]] == ["cert-ref"]
        page.goto("/certification/12345")
        expect(page.locator("#report-error")).to_contain_text("404 NotFound")
