"""The official Python device SDK can only use port 8883: ask for the standard ports."""

import pytest


@pytest.mark.azure_iot_standard_ports
def test_sdk_sends_telemetry(azure_iot_device, azure_iot_service, monkeypatch):
    azure = pytest.importorskip("azure.iot.device")
    monkeypatch.setenv("SSL_CERT_FILE", azure_iot_device.ca_file)  # how the SDK trusts a CA
    client = azure.IoTHubDeviceClient.create_from_connection_string(azure_iot_device.connection_string)
    client.connect()
    client.send_message(azure.Message("hello from the SDK"))
    client.shutdown()
    azure_iot_service.wait_for_telemetry(azure_iot_device.device_id, body="hello from the SDK")
