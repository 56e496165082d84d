"""The rules as pure functions: usernames, topics, filters, property bags, back-off shapes."""

from __future__ import annotations

from azure_iot_harness.certify import judge


def test_username_forms() -> None:
    ok = judge.username_problems("hub/dev/?api-version=2021-04-12&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1", "hub", "dev")
    assert ok == ([], [])
    errors, warnings = judge.username_problems("hub/dev", "hub", "dev")
    assert errors == [] and any("no api-version" in w for w in warnings)
    errors, _ = judge.username_problems("hub/other/?api-version=2021-04-12", "hub", "dev")
    assert errors and "not 'hub/dev/'" in errors[0]
    errors, _ = judge.username_problems("hub/dev/?api-version=2021-04-12&model-id=thermostat", "hub", "dev")
    assert errors and "not a DTMI" in errors[0]
    errors, warnings = judge.username_problems("hub/dev/api-version=2016-11-14", "hub", "dev")
    assert errors == [] and "legacy" in warnings[0]


def test_topics_and_filters() -> None:
    assert judge.documented_publish("devices/d/messages/events/a=1", "d")
    assert judge.documented_publish("$iothub/twin/GET/?$rid=1", "d")
    assert judge.documented_publish("$iothub/methods/res/200/?$rid=ab", "d")
    assert not judge.documented_publish("devices/d/status", "d")
    assert not judge.documented_publish("devices/other/messages/events/", "d")
    assert judge.documented_filter("devices/d/messages/devicebound/#", "d")
    assert not judge.documented_filter("#", "d")
    assert not judge.documented_filter("devices/d/#", "d")


def test_property_bags() -> None:
    assert judge.property_bag_problems("$.ct=application%2Fjson&$.ce=utf-8&note=a%20b") == []
    assert judge.property_bag_problems("site=hall 2")
    assert judge.property_bag_problems("$.ct=application/json") == []  # '/' may stay as it is
    assert any("system property" in p for p in judge.property_bag_problems("$.bogus=1"))
    assert judge.bag_values("a=x%20y&b=") == {"a": "x y", "b": ""}


def test_backoff_shapes() -> None:
    assert judge.backoff_problems([1.1, 2.3, 4.4, 8.9]) == ([], [])
    errors, _ = judge.backoff_problems([1.2, 1.2, 1.2, 1.2])
    assert "constant" in errors[0]
    errors, _ = judge.backoff_problems([1.5, 3.0, 4.5, 6.0])
    assert "linear" in errors[0]
    errors, _ = judge.backoff_problems([0.01, 0.02, 0.04, 0.08])
    assert "at least 1 s" in errors[0]
    _, warnings = judge.backoff_problems([1.0, 2.0, 4.0, 8.0])
    assert "no jitter" in warnings[0]
    errors, _ = judge.backoff_problems([1.0, 2.0])
    assert "not enough" in errors[0]


def test_sas_token_claims() -> None:
    hubs = {"hub"}
    assert judge.sas_problems({"sr": "hub%2Fdevices%2Fdev", "se": 4600, "skn": None}, 1000, hubs, "dev") == ([], [])
    errors, _ = judge.sas_problems({"sr": "127.0.0.1%2Fdevices%2Fdev", "se": 4600}, 1000, hubs, "dev")
    assert "not the hub" in errors[0]
    errors, _ = judge.sas_problems({"sr": "hub%2Fdevices%2Fother", "se": 4600}, 1000, hubs, "dev")
    assert "does not cover hub/devices/dev" in errors[0]
    errors, _ = judge.sas_problems({"sr": "hub/devices/dev", "se": 999}, 1000, hubs, "dev")
    assert "had expired" in errors[0]
    errors, _ = judge.sas_problems({"sr": "hub/devices/dev", "se": 1000 + 400 * 86400}, 1000, hubs, "dev")
    assert "valid for 400 days" in errors[0]
    errors, warnings = judge.sas_problems({"sr": "https://hub", "se": 1030, "skn": "device"}, 1000, hubs, "dev")
    assert errors == [] and len(warnings) == 3  # the whole hub, a policy key, 30 s left
    errors, warnings = judge.sas_problems({"sr": "gw/devices/dev", "se": 4600}, 1000, hubs, "dev", {"gw"})
    assert errors == [] and "gateway" in warnings[0]
    assert "not a SAS token" in judge.sas_problems({"error": "bad"}, 0, hubs, "dev")[0][0]


def test_sas_token_claims_of_a_module() -> None:
    ok = judge.sas_problems({"sr": "hub%2Fdevices%2Fgw%2Fmodules%2Ff", "se": 4600}, 1000, {"hub"}, "gw", module_id="f")
    assert ok == ([], [])
    errors, _ = judge.sas_problems({"sr": "hub/devices/gw/modules/other", "se": 4600}, 1000, {"hub"}, "gw", module_id="f")
    assert "does not cover hub/devices/gw/modules/f" in errors[0]
