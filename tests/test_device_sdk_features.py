"""Issue 3's acceptance path with the unmodified SDKs against `serve`: C2D from `c2d send`,
desired properties and direct methods from the service SDK, reported properties back, and all
of it still working after the device SDK renewed its SAS token by reconnecting."""

from __future__ import annotations

import queue

from azure.iot.device import IoTHubDeviceClient, MethodResponse
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod, Twin, TwinProperties
from msrest.exceptions import HttpOperationError

from tests.cli_helpers import run_cli
from tests.helpers import wait_for


class Device:
    """The SDK client with handlers that record what arrives and answer methods."""

    def __init__(self, connection_string: str, **kwargs):
        self.client = IoTHubDeviceClient.create_from_connection_string(connection_string, **kwargs)
        self.c2d, self.desired, self.methods = [], [], []
        self.client.on_message_received = self.c2d.append
        self.client.on_twin_desired_properties_patch_received = self.desired.append
        self.client.on_method_request_received = self._answer
        self.client.connect()

    def _answer(self, request):
        self.methods.append(request)
        self.client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"echo": request.payload}))


def _count(serve, text):
    """How often `text` occurs in serve's log so far."""
    lines = serve.stderr
    while True:
        try:
            line = lines.queue.get_nowait()
        except queue.Empty:
            break
        if line is not None:
            lines.seen.append(line)
    return sum(text in line for line in lines.seen)


FILTERS = ("devices/device1/messages/devicebound/#", "$iothub/twin/PATCH/properties/desired/#", "$iothub/methods/POST/#")


def _wait_subscribed(serve) -> None:
    """Until serve's log shows the device subscribed to C2D, desired properties and methods:
    only C2D messages enqueued after the subscription are delivered."""

    def subscribed() -> bool:
        _count(serve, "")  # reads what serve logged so far
        lines = [line for line in serve.stderr.seen if "device1 subscribed to" in line]
        return all(any(f in line for line in lines) for f in FILTERS)

    wait_for(subscribed, timeout=30)


def _c2d_send(serve, text, *props):
    out = run_cli("c2d", "send", "--device", "device1", "--data", text, *props, "--data-dir", str(serve.data_dir))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_c2d_twin_and_methods_with_the_official_sdks(served):
    serve, info = served
    device = Device(info["connectionStrings"]["device"])
    registry = IoTHubRegistryManager.from_connection_string(info["connectionStrings"]["service"])
    try:
        _wait_subscribed(serve)  # the SDK subscribes in the background once handlers are set
        message_id = _c2d_send(serve, "hello device", "--prop", "color=red", "--prop", "note=a b", "--content-type", "text/plain")
        msg = wait_for(lambda: device.c2d and device.c2d[0], timeout=20)
        assert msg.data == b"hello device" and msg.message_id == message_id
        assert msg.custom_properties == {"color": "red", "note": "a b"} and msg.content_type == "text/plain"

        twin = registry.get_twin("device1")
        registry.update_twin("device1", Twin(properties=TwinProperties(desired={"fan": 3})), twin.etag)
        patch = wait_for(lambda: device.desired and device.desired[0], timeout=20)
        assert patch["fan"] == 3 and patch["$version"] == 2

        device.client.patch_twin_reported_properties({"firmware": "1.2.3"})
        assert registry.get_twin("device1").properties.reported["firmware"] == "1.2.3"

        result = registry.invoke_device_method("device1", CloudToDeviceMethod(method_name="reboot", payload={"in": 1}, response_timeout_in_seconds=10))
        assert result.status == 200 and result.payload == {"echo": {"in": 1}}
        assert device.methods[0].name == "reboot"
    finally:
        device.client.shutdown()


def _invoke_between_renewals(registry, name: str, attempts: int = 5):
    """A direct method call to a device that renews its token, so reconnects, every 3 s. The hub
    waits for it to be back online (connectTimeoutInSeconds), but a request sent just before a
    reconnect is lost (IoT Hub sends method requests at QoS 0) and the call times out (504):
    such a call is made again. Any other answer, or 504 every time, fails the test."""
    for attempt in range(1, attempts + 1):
        try:
            return registry.invoke_device_method(
                "device1", CloudToDeviceMethod(method_name=name, response_timeout_in_seconds=5, connect_timeout_in_seconds=10)
            )
        except HttpOperationError as exc:
            if exc.response.status_code != 504 or attempt == attempts:
                raise


def test_everything_still_arrives_after_the_sdk_renews_its_token(served):
    serve, info = served
    # The SDK renews 120 s before expiry: a 123 s token is renewed (disconnect, reconnect) after 3 s.
    device = Device(info["connectionStrings"]["device"], sastoken_ttl=123)
    registry = IoTHubRegistryManager.from_connection_string(info["connectionStrings"]["service"])
    try:
        connects = lambda: _count(serve, "device1 connected from")  # noqa: E731
        subscribes = lambda: _count(serve, "device1 subscribed to")  # noqa: E731
        _wait_subscribed(serve)
        before = subscribes()
        wait_for(lambda: connects() >= 2, timeout=30)  # the token renewal reconnected
        _c2d_send(serve, "after renewal")
        wait_for(lambda: device.c2d, timeout=20)
        result = _invoke_between_renewals(registry, "ping")
        assert result.status == 200
        assert subscribes() == before, "the SDK subscribed again; the session should have kept its subscriptions"
    finally:
        device.client.shutdown()
