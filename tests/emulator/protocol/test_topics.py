import pytest

from azure_iot_harness.emulator.protocol.messages import MAX_D2C_BYTES, AuthMethod, build_telemetry
from azure_iot_harness.emulator.protocol.topics import (
    DpsUsername,
    HubUsername,
    c2d_filters,
    decode_property_bag,
    encode_property_bag,
    parse_telemetry_topic,
    parse_username,
)
from azure_iot_harness.errors import ProtocolViolation, UsernameError


@pytest.mark.parametrize(
    "username, device, module, api",
    [
        ("hub/dev/?api-version=2021-04-12", "dev", None, "2021-04-12"),
        ("hub/dev/api-version=2016-11-14", "dev", None, "2016-11-14"),
        ("hub/dev", "dev", None, None),
        ("hub/dev/", "dev", None, None),
        ("hub/dev/mod/?api-version=2021-04-12&DeviceClientType=py%2F2.14", "dev", "mod", "2021-04-12"),
        ("hub/dev/mod/api-version=2018-06-30", "dev", "mod", "2018-06-30"),
        ("hub/dev/mod", "dev", "mod", None),
    ],
)
def test_hub_username_forms(username, device, module, api):
    parsed = parse_username(username)
    assert isinstance(parsed, HubUsername)
    assert (parsed.host, parsed.device_id, parsed.module_id, parsed.api_version) == ("hub", device, module, api)


def test_username_query_is_decoded_and_model_id_kept():
    parsed = parse_username("h/d/?api-version=2020-09-30&DeviceClientType=c%2F1&model-id=dtmi%3Acom%3Aexample%3Bx")
    assert parsed.params["DeviceClientType"] == "c/1"
    assert parsed.params["model-id"] == "dtmi:com:example;x"


def test_dps_username():
    parsed = parse_username("0ne00000001/registrations/reg-1/api-version=2019-03-31&ClientVersion=x")
    assert isinstance(parsed, DpsUsername)
    assert (parsed.id_scope, parsed.registration_id) == ("0ne00000001", "reg-1")


@pytest.mark.parametrize("username", [None, "", "hub", "hub//dev", "a/b/c/d", "/dev"])
def test_bad_usernames(username):
    with pytest.raises(UsernameError):
        parse_username(username)


@pytest.mark.parametrize(
    "topic, device, module, bag",
    [
        ("devices/d/messages/events/", "d", None, ""),
        ("devices/d/messages/events", "d", None, ""),
        ("devices/d/messages/events/a=1&b", "d", None, "a=1&b"),
        ("devices/d/modules/m/messages/events/%24.ct=x", "d", "m", "%24.ct=x"),
    ],
)
def test_telemetry_topics(topic, device, module, bag):
    parsed = parse_telemetry_topic(topic)
    assert parsed is not None
    assert (parsed.device_id, parsed.module_id, parsed.bag) == (device, module, bag)


@pytest.mark.parametrize(
    "topic",
    ["devices/d/messages/eventsX", "devices/d/messages/devicebound/", "devices//messages/events/", "foo/d/messages/events/",
     "devices/d/x/m/messages/events/", "$iothub/twin/GET/?$rid=1"],
)
def test_not_telemetry_topics(topic):
    assert parse_telemetry_topic(topic) is None


def test_property_bag_decoding():
    bag = "%24.mid=m%201&$.ct=application%2Fjson&flag&empty=&plus=a%2Bb&uni=%C3%A9/"
    assert decode_property_bag(bag) == [
        ("$.mid", "m 1"),
        ("$.ct", "application/json"),
        ("flag", None),
        ("empty", ""),
        ("plus", "a+b"),
        ("uni", "é"),
    ]


@pytest.mark.parametrize("bag", ["a=b:c", "a=b c", "=v", "a=%zz", "a=%C3", "a=%4", 'a="x"', "a/b=1"])
def test_malformed_property_bags(bag):
    with pytest.raises(ProtocolViolation):
        decode_property_bag(bag)


def test_property_bag_round_trip():
    props = [("$.to", "/devices/a b/messages/devicebound"), ("k", None), ("x&y", "1=2")]
    assert decode_property_bag(encode_property_bag(props)) == props


def _build(bag, body=b"{}", retain=False):
    return build_telemetry(
        device_id="d", module_id=None, bag=bag, body=body, retain=retain,
        auth=AuthMethod("device", "sas"), generation_id="1", model_id="dtmi:x;1",
    )


def test_system_and_application_properties():
    t = _build([("$.mid", "1"), ("$.ct", "application/json"), ("$.ce", "utf-8"), ("$.to", "spoof"), ("app", "v")], retain=True)
    assert t.properties == {"app": "v", "mqtt-retain": "true"}
    sp = t.system_properties
    assert sp["message-id"] == "1" and sp["content-type"] == "application/json" and sp["content-encoding"] == "utf-8"
    assert sp["iothub-connection-device-id"] == "d"
    assert sp["dt-dataschema"] == "dtmi:x;1"
    assert '"type":"sas"' in sp["iothub-connection-auth-method"]
    assert "$.to" not in t.properties and "spoof" not in sp.values()


def test_message_size_limit_counts_properties():
    _build([], body=b"x" * MAX_D2C_BYTES)
    with pytest.raises(ProtocolViolation):
        _build([("k", "v")], body=b"x" * MAX_D2C_BYTES)


def test_c2d_filters_are_the_documented_one_and_the_embedded_sdks_plus_form():
    assert c2d_filters("dev1") == {"devices/dev1/messages/devicebound/#", "devices/+/messages/devicebound/#"}
