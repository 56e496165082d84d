"""`client kepware`: Kepware's standard template and bare username; the hub accepts it, edgeHub refuses it."""

from __future__ import annotations

import json

from azure_iot_harness.clients.kepware import standard_template
from tests.clients.helpers import client, failed, messages, ok, wait_messages


def test_standard_template_shape():
    doc = standard_template(["Channel1.Device1.Tag1", "Channel1.Device1.Tag2"], 3, 1521698375065)
    assert doc["timestamp"] == 1521698375065
    assert [sorted(v) for v in doc["values"]] == [["id", "q", "t", "v"]] * 2
    assert doc["values"][0] == {"id": "Channel1.Device1.Tag1", "v": 3, "q": True, "t": 1521698375065}


def test_the_hub_accepts_the_username_without_api_version(hub):
    before = len(messages(hub.info, "device1"))
    out = ok(client(hub, "kepware", "--count", "2", "--interval", "0", "--tag", "Plant.Line1.Speed"))
    assert "with username localhost/device1\n" in out and "acknowledged 2 of 2 messages" in out
    found = wait_messages(hub.info, "device1", before + 2)[before:]
    for m in found:
        body = json.loads(m["body"])
        assert set(body) == {"timestamp", "values"} and body["values"][0]["id"] == "Plant.Line1.Speed"
        assert m["properties"] == {} and "content-type" not in m["systemProperties"]  # Kepware sets no $.ct


def test_the_edge_refuses_it_and_takes_it_with_an_api_version(edge_hub):
    refused = failed(client(edge_hub, "kepware", "--edge", "--count", "1"))
    assert "the gateway refused the connection" in refused and "CONNACK 5" in refused and "--with-api-version" in refused
    out = ok(client(edge_hub, "kepware", "--edge", "--with-api-version", "--count", "1", "--tag", "Edge.Tag"))
    assert "/?api-version=" in out
    (m,) = [m for m in wait_messages(edge_hub.info, "leaf-device1", 1) if "Edge.Tag" in m["body"]]
    assert json.loads(m["body"])["values"][0]["q"] is True
