"""The README's pictures of the explorer page: an in-process emulator with an edge, paho devices
doing what devices do (telemetry, reported properties, C2D), the reports of two certify runs,
and Debian's chromium taking a screenshot of each main view into docs/. Run from the repository:
bash scripts/explorer-screenshots."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from azure_iot_harness.certify.lab import Lab  # noqa: E402
from azure_iot_harness.certify.publish import publish  # noqa: E402
from azure_iot_harness.certs import self_signed_cert  # noqa: E402
from azure_iot_harness.emulator.app import Emulator, EmulatorThread  # noqa: E402
from azure_iot_harness.emulator.protocol import sas  # noqa: E402
from tests.certify.helpers import broken_command, certify, reference_command  # noqa: E402
from tests.emulator.dps.helpers import group_key  # noqa: E402
from tests.emulator.edge.edge_helpers import connected_leaf  # noqa: E402
from tests.emulator.explorer.conftest import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402
from tests.helpers import https, sas_device  # noqa: E402

OUT = ROOT / "docs"
CHECKS = ["connect.connects", "credentials.username", "telemetry.publishes", "twin.get", "twin.desired", "twin.reported", "methods.answer"]


def certification_runs(emu: Emulator) -> None:
    """Two certify runs (each on an emulator of its own), their reports kept by `emu` as certify
    keeps them in the emulator it ran against."""
    lab = Lab(emu.info(), emulator=emu)
    for command, device_id in ((reference_command(), "thermostat-7"), (broken_command("bad_model_id"), "pump-2")):
        publish(lab, certify(command, device_id, checks=CHECKS), lambda line: None)


def main() -> None:
    thread = EmulatorThread(
        in_memory=True, mqtt_port=0, https_port=0, explorer=True, edge=True, edge_bind="127.0.0.2", edge_mqtt_port=0,
        dps_assigning_polls=0,
    )
    emu = thread.start()
    stop = threading.Event()
    try:
        put = lambda body: thread.call(emu.registry.put_device(body, if_match=None))  # noqa: E731
        put({"deviceId": "thermostat-7"})
        put({"deviceId": "pump-2"})
        cert = self_signed_cert("camera-x509")
        put({"deviceId": "camera-x509", "status": "disabled",
             "authentication": {"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": cert.sha1_thumbprint}}})
        thread.call(emu.registry.put_module("thermostat-7", {"moduleId": "sensor"}, if_match=None))
        https(emu, "PATCH", "/twins/thermostat-7?api-version=2021-04-12",
              {"tags": {"site": "lab-3"}, "properties": {"desired": {"interval": 5, "mode": "eco"}}})
        thermostat, pump = sas_device(emu, "thermostat-7"), sas_device(emu, "pump-2")
        for d in (thermostat, pump):
            assert d.connect() == 0
        thermostat.client.subscribe("devices/thermostat-7/messages/devicebound/#", qos=1)
        thermostat.publish("$iothub/twin/PATCH/properties/reported/?$rid=1", json.dumps({"firmware": "2.4.1", "interval": 5}))
        time.sleep(0.5)
        https(emu, "POST", "/_emulator/c2d/thermostat-7", {"data": "reboot", "messageId": "cmd-1", "ack": "full", "properties": {"reason": "update"}})
        https(emu, "POST", "/_emulator/c2d/pump-2", {"data": "stop", "messageId": "cmd-2"})
        thread.call(emu.dps.put_enrollment("individual", "gateway-9", {"attestation": {"type": "symmetricKey"}}, if_match=None))
        scope = emu.config.dps_id_scope
        for rid in ("sensor-a1", "sensor-a2"):
            token = sas.generate(f"{scope}/registrations/{rid}", group_key(rid), key_name="registration")
            https(emu, "PUT", f"/{scope}/registrations/{rid}/register?api-version=2021-06-01", {"registrationId": rid}, token=token)
        leaf = connected_leaf(thread, emu, "leaf-device1")
        certification_runs(emu)

        def send() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                body = json.dumps({"temperature": round(20 + (n % 7) * 0.4, 1), "humidity": 40 + n % 5, "seq": n})
                thermostat.publish("devices/thermostat-7/messages/events/$.ct=application%2Fjson&$.ce=utf-8&alert=false", body)
                if n % 3 == 0:
                    pump.publish("devices/pump-2/messages/events/line=4", json.dumps({"rpm": 1200 + n}))
                if n % 5 == 0:
                    leaf.publish("devices/leaf-device1/messages/events/", json.dumps({"door": "closed"}))
                stop.wait(0.15 + 0.1 * (n % 4))

        sender = threading.Thread(target=send, daemon=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            page = browser.new_context(base_url=emu.explorer_url, viewport={"width": 1280, "height": 800}).new_page()
            page.goto("/telemetry")
            page.wait_for_selector("#telemetry-state.connected")
            sender.start()
            page.wait_for_timeout(12_000)
            page.screenshot(path=str(OUT / "explorer-telemetry.png"))
            page.goto("/devices")
            page.wait_for_selector("tr[data-device-id='thermostat-7']")
            page.screenshot(path=str(OUT / "explorer-devices.png"), full_page=True)
            page.goto("/devices/thermostat-7")
            page.wait_for_selector("#c2d-messages tr[data-message-id='cmd-1']")
            page.fill("#method-name", "reboot")
            page.screenshot(path=str(OUT / "explorer-device.png"), full_page=True)
            page.goto("/dps")
            page.wait_for_selector("#dps-registrations tr[data-id='sensor-a2']")
            page.screenshot(path=str(OUT / "explorer-dps.png"), full_page=True)
            page.goto("/edge")
            page.wait_for_selector("#edge-routes tbody tr")
            page.screenshot(path=str(OUT / "explorer-edge.png"), full_page=True)
            https(emu, "POST", "/_emulator/faults", {"kind": "withhold-puback", "deviceId": "pump-2", "count": 3})
            https(emu, "POST", "/_emulator/faults", {"kind": "delay-twin", "durationSeconds": 600, "params": {"seconds": 2}})
            page.goto("/faults?deviceId=thermostat-7")
            page.wait_for_selector("#fault-table tr[data-kind='delay-twin']")
            page.wait_for_selector("#trace-table tbody tr")
            page.set_viewport_size({"width": 1280, "height": 1100})
            page.screenshot(path=str(OUT / "explorer-faults.png"))
            page.set_viewport_size({"width": 1280, "height": 800})
            page.goto("/certification")
            page.wait_for_selector("#certification-runs tr[data-device-id='pump-2']")
            page.screenshot(path=str(OUT / "explorer-certification.png"))
            page.goto("/certification/2")
            page.frame_locator("#report-frame").locator("section").first.wait_for()
            page.set_viewport_size({"width": 1280, "height": 1100})
            page.screenshot(path=str(OUT / "explorer-certification-report.png"))
            browser.close()
        stop.set()
        sender.join()
        for d in (thermostat, pump, leaf):
            d.close()
    finally:
        stop.set()
        thread.stop()
    for name in sorted(OUT.glob("explorer-*.png")):
        print(name.relative_to(ROOT))


if __name__ == "__main__":
    main()
