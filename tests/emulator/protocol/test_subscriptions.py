"""IoT Hub's subscription rules (pure), shared by the hub and the edge."""

from __future__ import annotations

import pytest

from azure_iot_harness.emulator.protocol.subscriptions import MAX_SUBSCRIPTIONS, allowed_filters, grant
from azure_iot_harness.errors import ProtocolViolation


def c2d_filter(device_id: str) -> str:
    return f"devices/{device_id}/messages/devicebound/#"


def test_devices_and_modules_have_their_own_documented_filters():
    device = allowed_filters("d", None)
    module = allowed_filters("d", "m")
    assert {c2d_filter("d"), "devices/+/messages/devicebound/#"} <= device and c2d_filter("d") not in module
    assert {"devices/d/modules/m/inputs/#", "devices/d/modules/m/#"} <= module
    assert len(module) == MAX_SUBSCRIPTIONS


def test_grant_keeps_what_was_there_and_caps_qos_at_1():
    subs, granted = grant({"$iothub/twin/res/#": 0}, [(c2d_filter("d"), 2), ("$iothub/methods/POST/#", 0)], allowed_filters("d", None))
    assert granted == [1, 0]
    assert subs == {"$iothub/twin/res/#": 0, c2d_filter("d"): 1, "$iothub/methods/POST/#": 0}


@pytest.mark.parametrize("topic", ["#", "devices/d/messages/events/#", c2d_filter("other"), "$iothub/twin/res/200"])
def test_anything_else_is_a_violation(topic):
    with pytest.raises(ProtocolViolation):
        grant({}, [(topic, 0)], allowed_filters("d", None))


def test_more_than_five_is_a_violation():
    allowed = frozenset(f"t{i}" for i in range(MAX_SUBSCRIPTIONS + 1))
    with pytest.raises(ProtocolViolation):
        grant({}, [(t, 0) for t in sorted(allowed)], allowed)
