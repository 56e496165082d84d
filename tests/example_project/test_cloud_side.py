"""Direct methods, twins and cloud-to-device messages, driven from the service side."""

from device import Device


def test_direct_method(azure_iot_device, azure_iot_service):
    with Device(azure_iot_device) as dev:
        dev.serve_methods()  # returns once the hub acknowledged the subscription
        answer = azure_iot_service.invoke_method(azure_iot_device.device_id, "double", 21)
    assert answer == {"status": 200, "payload": {"result": 42}}


def test_desired_properties(azure_iot_devices, azure_iot_service):
    creds = azure_iot_devices.sas("thermostat")
    azure_iot_service.patch_desired("thermostat", {"target": 19})
    assert azure_iot_service.get_twin("thermostat")["properties"]["desired"]["target"] == 19
    assert creds.connection_string.startswith("HostName=")


def test_cloud_to_device(azure_iot_device, azure_iot_service):
    with Device(azure_iot_device) as dev:
        dev.receive_c2d()
        azure_iot_service.send_c2d(azure_iot_device.device_id, "reboot", {"reason": "update"})
        assert dev.c2d_arrived.wait(10), "no cloud-to-device message"
    [(topic, body)] = dev.c2d
    assert body == "reboot" and "reason=update" in topic
