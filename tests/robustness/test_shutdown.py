"""Stopping `serve` with clients connected: every connection closed, a clean exit, no traceback."""

from __future__ import annotations

import signal
import socket
import ssl

import paho.mqtt.client as mqtt
import pytest
from azure.iot.device import IoTHubDeviceClient, Message

from azure_iot_harness.config import WELL_KNOWN_SAS_DEVICE_KEYS
from azure_iot_harness.emulator.protocol import sas
from tests.cli_helpers import publish_all
from tests.helpers import connect_packet


def _tls(info: dict, port: int) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=info["caFile"])
    raw = socket.create_connection((info["mqtt"]["host"], port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=info["hubHostName"])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_with_sdk_clients_connected_without_a_traceback(served, sig):
    serve, info = served
    host, key = info["hubHostName"], WELL_KNOWN_SAS_DEVICE_KEYS[0]
    cs = f"HostName={host};DeviceId=device1;SharedAccessKey={key}"
    # The device SDK over MQTT (8883) and over WebSocket (443), as another identity each.
    sdk = IoTHubDeviceClient.create_from_connection_string(
        cs.replace("device1", "sdk-mqtt", 1).replace(key, _key(info, "sdk-mqtt")), connection_retry=False
    )
    sdk.connect()
    sdk.send_message(Message("before the stop"))
    ws = IoTHubDeviceClient.create_from_connection_string(
        cs.replace("device1", "sdk-ws", 1).replace(key, _key(info, "sdk-ws")), websockets=True, connection_retry=False
    )
    ws.connect()
    # paho, acknowledged traffic behind it.
    paho = mqtt.Client(client_id="device1", protocol=mqtt.MQTTv311)
    paho.username_pw_set(f"{host}/device1/?api-version=2021-04-12", sas.generate(f"{host}/devices/device1", key))
    paho.tls_set_context(ssl.create_default_context(cafile=info["caFile"]))
    paho.connect(host, info["mqtt"]["port"])
    paho.loop_start()
    publish_all(paho, [("devices/device1/messages/events/", "x")])
    # Peers that never finish anything: an MQTT client that stops reading after CONNECT, an
    # HTTPS request whose body never comes, a TLS handshake left half done.
    stalled = _tls(info, info["mqtt"]["port"])
    stalled.sendall(connect_packet("nobody", f"{host}/nobody/?api-version=2021-04-12", "x"))
    half_request = _tls(info, info["https"]["port"])
    half_request.sendall(b"PUT /devices/x?api-version=2021-04-12 HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n{")
    half_handshake = socket.create_connection((info["mqtt"]["host"], info["mqtt"]["port"]))
    half_handshake.sendall(b"\x16\x03\x01")

    serve.proc.send_signal(sig)
    code = serve.proc.wait(60)  # a guard: the emulator bounds its own shutdown far below this
    err = serve.stderr.rest()
    assert code == 0, err
    assert "Traceback" not in err and " ERROR " not in err, err
    for s in (stalled, half_request, half_handshake):
        s.close()
    for client in (sdk, ws):
        client.shutdown()
    paho.loop_stop()


def _key(info: dict, device_id: str) -> str:
    """Create `device_id` with a fresh key through the service API; return the key."""
    import json
    import urllib.request

    key = sas.new_key()
    token = sas.generate(f"{info['hubHostName']}", "mbkFS9h3dgFjx6qC+xgn4pRdYE3qmB2YGwvF+rRULCA=", key_name="iothubowner")
    body = json.dumps({"deviceId": device_id, "authentication": {"type": "sas", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}})
    req = urllib.request.Request(
        f"https://{info['hubHostName']}:{info['https']['port']}/devices/{device_id}?api-version=2021-04-12",
        data=body.encode(),
        method="PUT",
        headers={"Authorization": token, "Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, context=ssl.create_default_context(cafile=info["caFile"]), timeout=30).close()
    return key
