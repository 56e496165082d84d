"""The packet trace, read over HTTP (NDJSON) and from Python, with real clients."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.request

from azure_iot_harness.emulator.trace import Trace
from tests.helpers import https, raw_sas_connect, sas_device, subscribe_packet, wait_for


def _trace(emu, query: str = "") -> list[dict]:
    status, _, body = https(emu, "GET", "/_emulator/trace" + query)
    assert status == 200, body
    if body is None:
        return []
    text = body if isinstance(body, str) else json.dumps(body)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_paho_session_is_traced_both_ways_without_the_password(emulator):
    dev = sas_device(emulator, clean_session=True)
    assert dev.connect() == 0
    mid = dev.publish("devices/device1/messages/events/a=1", b"hello", qos=1)
    wait_for(lambda: mid in dev.acked, what="PUBACK")
    dev.close()
    wait_for(lambda: any(e["type"] == "CLOSE" for e in _trace(emulator, "?deviceId=device1")), what="CLOSE event")
    events = _trace(emulator, "?deviceId=device1")
    types = [(e["direction"], e["type"]) for e in events]
    assert types[:3] == [("event", "TLS"), ("in", "CONNECT"), ("out", "CONNACK")]
    connect = events[1]
    assert connect["client_id"] == "device1" and connect["clean_session"] is True and connect["keep_alive"] == 60
    assert connect["username"].startswith(f"{emulator.host}/device1/")
    assert "password" not in connect and device_password_absent(events, dev)
    assert events[2]["return_code"] == 0
    pub = next(e for e in events if e["type"] == "PUBLISH")
    assert pub["direction"] == "in" and pub["qos"] == 1 and pub["dup"] is False and pub["retain"] is False
    assert pub["topic"] == "devices/device1/messages/events/a=1" and pub["payload_size"] == 5 and "payload" not in pub
    puback = next(e for e in events if e["type"] == "PUBACK")
    assert puback["direction"] == "out" and puback["packet_id"] == pub["packet_id"]
    assert ("in", "DISCONNECT") in types and events[-1]["type"] == "CLOSE" and events[-1]["reason"] == "client sent DISCONNECT"
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert {e["conn"] for e in events} == {connect["conn"]}
    # The same from Python, and filtered by connection and sequence number.
    py = emulator.trace.events(device_id="device1")
    assert [e.to_json() for e in py] == events
    assert _trace(emulator, f"?conn={connect['conn']}&since={pub['seq']}") == [e for e in events if e["seq"] > pub["seq"]]
    assert _trace(emulator, "?deviceId=someone-else") == []


def device_password_absent(events: list[dict], dev) -> bool:
    token = dev.client._password  # what paho sent as the password
    return all(token.decode() not in json.dumps(e) for e in events)


def test_subscribe_and_suback_are_traced_with_filters_and_codes(emulator):
    c = raw_sas_connect(emulator)
    c.send(subscribe_packet([("devices/device1/messages/devicebound/#", 1), ("$iothub/twin/res/#", 0)], packet_id=7))
    assert c.read_packet()[0] == 9
    events = _trace(emulator, "?deviceId=device1")
    sub = next(e for e in events if e["type"] == "SUBSCRIBE")
    assert sub["packet_id"] == 7 and sub["topics"] == [["devices/device1/messages/devicebound/#", 1], ["$iothub/twin/res/#", 0]]
    suback = next(e for e in events if e["type"] == "SUBACK")
    assert suback["packet_id"] == 7 and suback["return_code"] == [1, 0]
    c.close()


def test_follow_streams_new_events_over_http(emulator):
    ctx = ssl.create_default_context(cafile=str(emulator.ca_file))
    req = urllib.request.Request(
        f"https://localhost:{emulator.https_port}/_emulator/trace?deviceId=device1&follow=true",
        headers={"Authorization": emulator.service_token()},
    )
    seen: list[dict] = []
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("application/x-ndjson")

        def read() -> None:
            for line in resp:
                if line.strip():
                    seen.append(json.loads(line))
                    if seen[-1]["type"] == "CONNACK":
                        return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        c = raw_sas_connect(emulator)
        reader.join(10)
        c.close()
    assert [e["type"] for e in seen][-2:] == ["CONNECT", "CONNACK"]


def test_trace_is_bounded_per_connection_and_overall():
    trace = Trace(per_connection=3, max_events=5)
    first = trace.open("hub", "127.0.0.1:1")
    assert first is not None
    first.identify("d1", None)
    for _ in range(10):
        first.packet_in(12, 0, 2)
    assert len(trace.events()) == 3  # the ring keeps the last 3
    first.event("CLOSE", "gone")
    second = trace.open("hub", "127.0.0.1:2")
    assert second is not None
    for _ in range(3):
        second.packet_in(12, 0, 2)
    # 6 > 5: the oldest closed connection is forgotten first.
    assert {e.conn for e in trace.events()} == {second.conn}
    assert Trace(enabled=False).open("hub", "x") is None


def test_clear_over_http(emulator):
    raw_sas_connect(emulator).close()
    assert _trace(emulator)
    assert https(emulator, "DELETE", "/_emulator/trace")[0] == 204
    assert [e for e in _trace(emulator) if e["type"] != "CLOSE"] == []


def test_connect_event_shows_the_tokens_claims_and_the_will_but_never_the_signature(emulator):
    from azure_iot_harness.emulator.protocol import sas

    dev = sas_device(emulator, clean_session=True)
    dev.client.will_set("devices/device1/messages/events/", b"gone", qos=1)
    assert dev.connect() == 0
    dev.close()
    wait_for(lambda: any(e["type"] == "CLOSE" for e in _trace(emulator, "?deviceId=device1")), what="CLOSE event")
    connect = next(e for e in _trace(emulator, "?deviceId=device1") if e["type"] == "CONNECT")
    token = sas.parse(dev.client._password.decode())
    assert connect["sas"] == {"sr": token.sr, "se": token.expiry, "skn": None}
    assert connect["will"] == {"topic": "devices/device1/messages/events/", "qos": 1, "retain": False, "size": 4}
    assert "sig" not in json.dumps(connect) and device_password_absent([connect], dev)


def test_connect_event_says_why_a_password_is_not_a_sas_token(emulator):
    from tests.helpers import PahoDevice

    dev = PahoDevice(emulator, "device1", username=f"{emulator.host}/device1/?api-version=2021-04-12", password="hunter2")
    assert dev.connect() == 5
    wait_for(lambda: any(e["type"] == "CONNECT" for e in _trace(emulator, "?deviceId=device1")), what="CONNECT event")
    connect = next(e for e in _trace(emulator, "?deviceId=device1") if e["type"] == "CONNECT")
    assert connect["sas"] == {"error": "SAS token does not start with 'SharedAccessSignature '"}
    assert "will" not in connect and "hunter2" not in json.dumps(connect)
