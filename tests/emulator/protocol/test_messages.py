"""The telemetry record: the JSON text the stamp builds is json.dumps of the message's dicts."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from azure_iot_harness.emulator.protocol.messages import AuthMethod, TelemetryStamp, build_telemetry, iso_ms, utc_now_iso
from azure_iot_harness.errors import ProtocolViolation

BAGS = [
    [],
    [("k", "v"), ("n", None), ("quote", 'a"b\\c'), ("ünï", "cödé")],
    [("$.mid", "id-1"), ("$.ct", "application/json"), ("$.ce", "utf-8"), ("$.to", "spoofed"), ("k", "")],
]


@pytest.mark.parametrize("bag", BAGS)
@pytest.mark.parametrize(("module_id", "model_id", "retain"), [(None, None, False), ("m1", "dtmi:com:example;1", True)])
def test_the_stamps_json_is_what_json_dumps_makes(bag, module_id, model_id, retain) -> None:
    auth = AuthMethod("module" if module_id else "device", "sas")
    stamp = TelemetryStamp("dev", module_id, auth, "63800", model_id)
    prepared = stamp.prepare(bag, retain)
    for n, body in enumerate((b"one", b"two")):  # the prepared bag serves every message with it
        now = dt.datetime(2026, 5, 1, 12, 0, n, 123456, tzinfo=dt.UTC)
        t, (props, sysprops) = stamp.build(prepared, body, now.timestamp())
        assert props == json.dumps(t.properties) and sysprops == json.dumps(t.system_properties)
        assert t.system_properties["iothub-enqueuedtime"] == t.enqueued_time == f"2026-05-01T12:00:0{n}.123Z"
        plain = build_telemetry(device_id="dev", module_id=module_id, bag=bag, body=body, retain=retain, auth=auth,
                                generation_id="63800", model_id=model_id, now=now)  # fmt: skip
        assert t == plain and list(t.system_properties) == list(plain.system_properties)
    t.properties["x"] = "changed"
    assert "x" not in stamp.build(prepared, b"three")[0].properties  # each message has its own dicts


def test_the_size_limit_counts_the_bag_and_the_body() -> None:
    stamp = TelemetryStamp("dev", None, AuthMethod("device", "sas"), "1", None)
    prepared = stamp.prepare([("k", "v" * 1000)], False)
    stamp.build(prepared, b"x" * (256 * 1024 - 1001))
    with pytest.raises(ProtocolViolation, match="exceeds IoT Hub's 262144-byte limit"):
        stamp.build(prepared, b"x" * (256 * 1024 - 1000))


def test_a_message_id_over_128_characters_is_refused() -> None:
    stamp = TelemetryStamp("dev", None, AuthMethod("device", "sas"), "1", None)
    with pytest.raises(ProtocolViolation, match="message id"):
        stamp.prepare([("$.mid", "x" * 129)], False)


@pytest.mark.parametrize("t", [0.0, 0.0005, 59.9995, 981173106.123456, 1777636800.999, 1777636801.0, 4102444799.5, -0.25])
def test_iso_ms_is_the_text_utc_now_iso_makes(t) -> None:
    text, ms = iso_ms(t)
    assert text == utc_now_iso(dt.datetime.fromtimestamp(t, dt.UTC))
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert ms == (dt.datetime.fromisoformat(text.replace("Z", "+00:00")) - epoch) // dt.timedelta(milliseconds=1)
    assert iso_ms(t) == (text, ms)  # the second's text comes from the cache now
