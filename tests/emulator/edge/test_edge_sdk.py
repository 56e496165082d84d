"""The unmodified Python device SDK through the edge: as a leaf device (GatewayHostName) and as
a module (IoT Edge environment and workload API). Both need the gateway on port 8883."""

from __future__ import annotations

import json

import pytest
from azure.iot.device import IoTHubDeviceClient, IoTHubModuleClient, Message

from azure_iot_harness.emulator.app import EmulatorThread
from azure_iot_harness.errors import ConfigError
from tests.conftest import free_loopback_address
from tests.helpers import https, wait_for


@pytest.fixture
def edge_8883():
    for _ in range(20):
        thread = EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, edge=True, edge_bind=free_loopback_address(), edge_mqtt_port=8883)
        try:
            emu = thread.start()
        except ConfigError:
            continue
        try:
            yield thread, emu
        finally:
            thread.stop()
        return
    pytest.fail("no loopback address with a free port 8883")


def _hub_messages(emu):
    return https(emu, "GET", "/_emulator/telemetry")[2]["messages"]


def test_leaf_device_through_the_gateway(edge_8883, monkeypatch):
    thread, emu = edge_8883
    monkeypatch.setenv("SSL_CERT_FILE", str(emu.ca_file))
    cs = emu.info()["connectionStrings"]["leafDevice"]
    assert ";GatewayHostName=" in cs
    client = IoTHubDeviceClient.create_from_connection_string(cs)
    client.connect()
    client.send_message(Message(json.dumps({"via": "gateway"}), content_type="application/json", content_encoding="utf-8"))
    client.shutdown()
    msg = wait_for(lambda: _hub_messages(emu))[0]
    assert msg["deviceId"] == "leaf-device1" and json.loads(msg["body"]) == {"via": "gateway"}


def test_module_from_the_edge_environment(edge_8883, monkeypatch):
    thread, emu = edge_8883
    thread.call(emu.registry.put_module("edge-device1", {"moduleId": "sensor"}, if_match=None))
    for name, value in emu.edge.module_environment("sensor").items():
        monkeypatch.setenv(name, value)
    client = IoTHubModuleClient.create_from_edge_environment()
    client.connect()
    client.send_message_to_output(Message("from a module"), "out1")
    client.shutdown()
    msg = wait_for(lambda: _hub_messages(emu))[0]
    assert msg["deviceId"] == "edge-device1" and msg["moduleId"] == "sensor" and msg["body"] == "from a module"
