"""Bulk registry operations (POST /devices with an array), request by request."""

from __future__ import annotations

import pytest

from tests.helpers import https, sas_device, wait_for

API = "?api-version=2021-04-12"


def bulk(emulator, entries, **kw):
    return https(emulator, "POST", "/devices" + API, entries, **kw)


def device(emulator, device_id):
    return https(emulator, "GET", f"/devices/{device_id}" + API)


def test_create_update_and_delete_in_bulk(emulator):
    # What Registry.addDevices / updateDevices(…, true) / removeDevices(…, true) send.
    status, _, result = bulk(emulator, [{"id": f"b{i}", "importMode": "create", "status": "disabled"} for i in range(3)])
    assert (status, result) == (200, {"isSuccessful": True, "errors": [], "warnings": []})
    assert device(emulator, "b1")[2]["status"] == "disabled"
    assert bulk(emulator, [{"id": f"b{i}", "importMode": "Update", "status": "enabled"} for i in range(3)])[0] == 200
    assert device(emulator, "b2")[2]["status"] == "enabled"
    assert bulk(emulator, [{"id": f"b{i}", "importMode": "Delete"} for i in range(3)])[0] == 200
    assert device(emulator, "b0")[0] == 404


def test_each_failure_is_reported_by_device_and_the_rest_still_happens(emulator):
    entries = [
        {"id": "device1", "importMode": "create"},  # exists
        {"id": "fresh", "importMode": "create"},
        {"id": "ghost", "importMode": "delete"},  # does not exist
        {"id": "bad id!", "importMode": "create"},
        {"id": "ghost2", "importMode": "update"},
    ]
    status, headers, result = bulk(emulator, entries)
    assert status == 400 and result["isSuccessful"] is False and result["warnings"] == []
    assert [(e["deviceId"], e["errorCode"]) for e in result["errors"]] == [
        ("device1", "DeviceAlreadyExists"), ("ghost", "DeviceNotFound"), ("bad id!", "ArgumentInvalid"),
        ("ghost2", "DeviceNotFound"),
    ]  # fmt: skip
    assert all(e["errorStatus"] for e in result["errors"])
    assert device(emulator, "fresh")[0] == 200


def test_etag_modes(emulator):
    etag = device(emulator, "device1")[2]["etag"]
    status, _, result = bulk(emulator, [{"id": "device1", "importMode": "UpdateIfMatchETag", "eTag": "AAAA", "status": "disabled"}])
    assert status == 400 and result["errors"][0]["errorCode"] == "PreconditionFailed"
    assert bulk(emulator, [{"id": "device1", "importMode": "UpdateIfMatchETag", "etag": etag, "status": "disabled"}])[0] == 200
    assert device(emulator, "device1")[2]["status"] == "disabled"
    status, _, result = bulk(emulator, [{"id": "device1", "importMode": "DeleteIfMatchETag"}])
    assert status == 400 and result["errors"][0]["errorCode"] == "PreconditionFailed"
    etag = device(emulator, "device1")[2]["etag"]
    assert bulk(emulator, [{"id": "device1", "importMode": "deleteIfMatchETag", "eTag": f'"{etag}"'}])[0] == 200
    assert device(emulator, "device1")[0] == 404


def test_create_or_update_is_the_default_and_twin_data_is_merged(emulator):
    entries = [
        {"id": "device1", "status": "disabled"},
        {"id": "twinned", "importMode": "createOrUpdate", "tags": {"site": "a"}, "properties": {"desired": {"fan": 1}}},
    ]
    assert bulk(emulator, entries)[0] == 200
    assert device(emulator, "device1")[2]["status"] == "disabled"
    twin = https(emulator, "GET", "/twins/twinned" + API)[2]
    assert twin["tags"] == {"site": "a"} and twin["properties"]["desired"]["fan"] == 1


def test_update_twin_notifies_the_device(emulator):
    dev = sas_device(emulator)
    assert dev.connect() == 0
    try:
        dev.client.subscribe("$iothub/twin/PATCH/properties/desired/#", 1)
        wait_for(lambda: emulator.hub.sessions[("device1", None)].state.subscriptions)
        status, _, result = bulk(emulator, [{"id": "device1", "importMode": "updateTwin", "properties": {"desired": {"x": 1}}}])
        assert status == 200, result
        msg = wait_for(lambda: next((m for m in dev.messages if "desired" in m.topic), None))
        assert msg.topic == "$iothub/twin/PATCH/properties/desired/?$version=2"
        status, _, result = bulk(emulator, [{"id": "device1", "importMode": "updateTwinIfMatchETag", "twinETag": "AAAA", "tags": {"a": 1}}])
        assert status == 400 and result["errors"][0]["errorCode"] == "PreconditionFailed"
    finally:
        dev.close()


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"id": "x"}, 400, "ArgumentInvalid"),
        ([], 400, "ArgumentInvalid"),
        ([{"id": f"d{i}"} for i in range(101)], 413, "TooManyDevices"),
        ([{"importMode": "create"}], 400, "ArgumentInvalid"),
        ([{"id": "a", "importMode": "replace"}], 400, "ArgumentInvalid"),
        ([{"id": "a"}, {"id": "a", "importMode": "delete"}], 400, "DeviceDefinedMultipleTimes"),
        ([{"id": "a", "moduleId": "m"}], 501, "NotImplemented"),
    ],
)
def test_malformed_requests_are_refused_whole(emulator, body, status, code):
    got, headers, answer = bulk(emulator, body)
    assert (got, headers["iothub-errorcode"]) == (status, code), answer
    assert device(emulator, "a")[0] == 404 and device(emulator, "x")[0] == 404


def test_bulk_needs_registry_write(emulator):
    token = emulator.service_token("registryRead")
    assert bulk(emulator, [{"id": "a"}], token=token)[0] == 401
