"""MQTT over WebSocket on the HTTPS port at /$iothub/websocket, as the SDKs' websockets option uses it."""

from __future__ import annotations

import base64
import os
import socket
import ssl

import paho.mqtt.client as mqtt
from azure.iot.device import IoTHubDeviceClient, Message

from azure_iot_harness.certs import DevPKI
from tests.helpers import device_token, https, wait_for


def _ws_client(emu, client_id="device1", username="localhost/device1/?api-version=2021-04-12", password=None, certfile=None, keyfile=None):
    c = mqtt.Client(client_id=client_id, transport="websockets")
    c.ws_set_options(path="/$iothub/websocket")
    c.username_pw_set(username, password or (None if certfile else device_token(emu, "device1")))
    c.tls_set(ca_certs=str(emu.ca_file), certfile=certfile, keyfile=keyfile)
    events = {"rc": [], "acks": [], "gone": []}
    c.on_connect = lambda cl, u, f, rc: events["rc"].append(rc)
    c.on_publish = lambda cl, u, mid: events["acks"].append(mid)
    c.on_disconnect = lambda cl, u, rc: events["gone"].append(rc)
    c.connect("localhost", emu.https_port)
    c.loop_start()
    wait_for(lambda: events["rc"] or events["gone"])
    return c, events


def test_telemetry_over_websocket(emulator):
    c, ev = _ws_client(emulator)
    assert ev["rc"] == [0]
    info = c.publish("devices/device1/messages/events/kind=ws", b"hello", qos=1)
    wait_for(lambda: info.mid in ev["acks"])
    [msg] = https(emulator, "GET", "/_emulator/telemetry")[2]["messages"]
    assert msg["body"] == "hello" and msg["properties"] == {"kind": "ws"}
    c.disconnect()
    c.loop_stop()


def test_bad_token_over_websocket_gets_connack_5(emulator):
    c, ev = _ws_client(emulator, password="SharedAccessSignature sr=x&sig=AAAA&se=1")
    assert ev["rc"] == [5]
    c.loop_stop()


def test_x509_over_websocket_uses_the_https_connections_certificate(emulator, tmp_path):
    # The device's certificate (leaf + device CA) comes from the TLS handshake of the HTTPS
    # connection that carries the WebSocket; an unknown CA is refused at CONNECT.
    good = emulator.pki.issue_device_cert("x509-device1")
    bad = DevPKI.generate().issue_device_cert("x509-device1")
    for cert, expected in ((good, 0), (bad, 5)):
        certfile, keyfile = cert.write(tmp_path)
        c, ev = _ws_client(emulator, "x509-device1", "localhost/x509-device1/?api-version=2021-04-12", certfile=str(certfile), keyfile=str(keyfile))
        assert ev["rc"] == [expected]
        c.disconnect()
        c.loop_stop()


def test_violation_over_websocket_closes_it(emulator):
    c, ev = _ws_client(emulator)
    assert ev["rc"] == [0]
    c.publish("devices/device1/messages/events/", b"x", qos=2)
    wait_for(lambda: ev["gone"])
    c.loop_stop()


def test_websocket_without_the_mqtt_subprotocol_is_refused(emulator):
    ctx = ssl.create_default_context(cafile=str(emulator.ca_file))
    with socket.create_connection(("127.0.0.1", emulator.https_port)) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        key = base64.b64encode(os.urandom(16)).decode()
        tls.sendall(
            f"GET /$iothub/websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        answer = tls.recv(200)
        assert not answer.startswith(b"HTTP/1.1 101")


def test_device_sdk_with_websockets_on_443(standard_ports_emulator, monkeypatch):
    emu = standard_ports_emulator
    monkeypatch.setenv("SSL_CERT_FILE", str(emu.ca_file))
    client = IoTHubDeviceClient.create_from_connection_string(emu.connection_string(device="device1"), websockets=True)
    client.connect()
    client.send_message(Message("via 443"))
    client.shutdown()
    assert https(emu, "GET", "/_emulator/telemetry")[2]["messages"][0]["body"] == "via 443"
