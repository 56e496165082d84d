"""`client translator`: brownfield topics onto the telemetry topic, directly and behind the bridge."""

from __future__ import annotations

from azure_iot_harness.clients.translator import match_template, should_forward, translate
from tests.clients.helpers import client, failed, messages, publish_plain, ready_port, start, wait_messages

TEMPLATE = "plant/{site}/{line}/{tag}"


def test_template_and_loop_rules():
    assert match_template(TEMPLATE, "plant/berlin/l3/temp") == {"site": "berlin", "line": "l3", "tag": "temp"}
    assert match_template(TEMPLATE, "plant/berlin/l3") == {}
    assert match_template(TEMPLATE, "factory/berlin/l3/temp") == {}
    assert match_template("+/{site}/#", "a/b/c/d") == {"site": "b"}
    assert match_template(None, "a/b") == {}
    assert not should_forward("devices/dev1/messages/events/x=1")  # already hub-shaped (and our own output)
    assert not should_forward("$SYS/broker/uptime")
    assert should_forward("zigbee2mqtt/sensor")
    topic = translate("plant/a b/l1/t", b'{"v": 1}', "dev1", TEMPLATE, "mqtt-topic")
    assert topic == "devices/dev1/messages/events/$.ct=application%2Fjson&$.ce=utf-8&mqtt-topic=plant%2Fa%20b%2Fl1%2Ft&site=a%20b&line=l1&tag=t"
    assert translate("x", b"raw", "dev1", None, "src") == "devices/dev1/messages/events/src=x"


def test_direct_to_the_hub_with_the_embedded_amqtt_broker(hub):
    proc = start(hub, "translator", "--source", "127.0.0.1:0", "--site-broker", "amqtt", "--template", TEMPLATE, "--count", "2")
    try:
        assert any("site broker amqtt" in line for line in proc.stdout.seen)
        port = ready_port(proc)
        publish_plain(port, "plant/berlin/l3/temp", '{"v": 21.5}')
        publish_plain(port, "devices/device1/messages/events/skipped=1", "not translated")
        publish_plain(port, "other/raw", "7 bar")
        assert proc.wait(30) == 0, proc.stderr.rest()
    finally:
        proc.terminate()
    (templated,) = wait_messages(hub.info, "device1", 1, where={"mqtt-topic": "plant/berlin/l3/temp"})
    assert templated["properties"] == {"mqtt-topic": "plant/berlin/l3/temp", "site": "berlin", "line": "l3", "tag": "temp"}
    assert templated["systemProperties"]["content-type"] == "application/json"
    (raw,) = wait_messages(hub.info, "device1", 1, where={"mqtt-topic": "other/raw"})
    assert raw["body"] == "7 bar" and raw["properties"] == {"mqtt-topic": "other/raw"}
    assert not [m for m in messages(hub.info, "device1") if m["properties"].get("skipped")]


def test_behind_the_mosquitto_bridge_without_loops(hub, mosquitto):
    bridge = start(hub, "mosquitto-bridge", "--local-port", "0", "--device-id", "device1")
    try:
        port = ready_port(bridge)
        translator = start(hub, "translator", "--source", f"127.0.0.1:{port}", "--to", "local", "--template", TEMPLATE)
        try:
            for n in range(3):
                publish_plain(port, f"plant/hamburg/l{n}/pressure", str(n))
            found = wait_messages(hub.info, "device1", 3, where={"site": "hamburg"})
            # A loop would send copies of these on before a later message: mosquitto, the
            # translator and the bridge each keep the order, so once that one is in, so are they.
            publish_plain(port, "plant/marker/l9/pressure", "9")
            wait_messages(hub.info, "device1", 1, where={"site": "marker"})
            again = [m for m in messages(hub.info, "device1") if m["properties"].get("site") == "hamburg"]
            assert len(again) == len(found) == 3
            assert sorted(m["properties"]["line"] for m in again) == ["l0", "l1", "l2"]
        finally:
            assert translator.terminate() == 0
    finally:
        bridge.terminate()


def test_through_the_edge_with_a_mosquitto_site_broker(edge_hub, mosquitto):
    proc = start(edge_hub, "translator", "--edge", "--source", "127.0.0.1:0", "--site-broker", "mosquitto", "--count", "1")
    try:
        assert any("site broker mosquitto" in line for line in proc.stdout.seen)
        publish_plain(ready_port(proc), "line7/speed", "1200")
        assert proc.wait(30) == 0, proc.stderr.rest()
    finally:
        proc.terminate()
    assert wait_messages(edge_hub.info, "leaf-device1", 1, where={"mqtt-topic": "line7/speed"})


def test_no_local_broker_is_a_clear_error(hub):
    assert "the local broker" in failed(client(hub, "translator", "--source", "127.0.0.1:1"))
    assert "--source wants HOST:PORT" in failed(client(hub, "translator", "--source", "nowhere"), 2)
