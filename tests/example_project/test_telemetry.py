"""Telemetry: the device sends, the test reads it back through the service helper."""

from device import Device


def test_reading_arrives_with_its_properties(azure_iot_device, azure_iot_service):
    with Device(azure_iot_device) as dev:
        dev.send_reading(21.5)
    [msg] = azure_iot_service.wait_for_telemetry(azure_iot_device.device_id, body={"temperature": 21.5}, properties={"unit": "C"})
    assert msg["systemProperties"]["content-type"] == "application/json"


def test_x509_device(azure_iot_x509_device, azure_iot_service):
    with Device(azure_iot_x509_device) as dev:
        dev.send_reading(4.0)
    azure_iot_service.wait_for_telemetry(azure_iot_x509_device.device_id, body={"temperature": 4.0})


def test_each_test_starts_fresh(azure_iot_service):
    assert azure_iot_service.telemetry() == []
