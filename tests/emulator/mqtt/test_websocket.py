"""MQTT over WebSocket on the HTTPS port at /$iothub/websocket, as the SDKs' websockets option uses it."""

from __future__ import annotations

import base64
import logging
import os
import socket
import ssl
import struct

import paho.mqtt.client as mqtt
import pytest
from azure.iot.device import IoTHubDeviceClient, Message

from azure_iot_harness.certs import DevPKI
from tests.helpers import connect_packet, device_token, https, wait_for


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


# ---- closing, in every order a client may close ----------------------------------------------

DISCONNECT = b"\xe0\x00"
TEXT, BINARY, CLOSE = 0x1, 0x2, 0x8


class RawWebSocket:
    """MQTT over a hand-made WebSocket, so a test decides the order of every closing step."""

    def __init__(self, emu) -> None:
        ctx = ssl.create_default_context(cafile=str(emu.ca_file))
        self.tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", emu.https_port), timeout=10), server_hostname="localhost")
        key = base64.b64encode(os.urandom(16)).decode()
        self.tls.sendall(
            f"GET /$iothub/websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.tls.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        user = "localhost/device1/?api-version=2021-04-12"
        self.send(BINARY, connect_packet("device1", user, device_token(emu, "device1")))
        assert self.recv() == (BINARY, b"\x20\x02\x00\x00")

    def send(self, opcode: int, payload: bytes = b"") -> None:
        mask = os.urandom(4)
        n = len(payload)
        length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.tls.sendall(bytes([0x80 | opcode]) + length + mask + masked)

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.tls.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def recv(self) -> tuple[int, bytes]:
        first, second = self._exactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._exactly(2))
        return first & 0x0F, self._exactly(length)

    def close_frame(self) -> None:
        self.send(CLOSE, struct.pack("!H", 1000))

    def server_closes_tls(self) -> bool:
        """True once the server has ended TLS (its close_notify, or the socket closing)."""
        self.tls.settimeout(1)
        try:
            return self.tls.recv(1) == b""
        except TimeoutError:
            return False
        except (ssl.SSLError, OSError):
            return True

    def close_notify(self) -> None:
        try:
            self.tls.unwrap().close()
        except (ssl.SSLError, OSError):
            self.tls.close()

    def reset(self) -> None:
        self.tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.tls.close()


def _disconnect_close_frame_then_tls(ws):
    ws.send(BINARY, DISCONNECT)
    ws.close_frame()
    ws.close_notify()


def _close_frame_without_disconnect(ws):
    ws.close_frame()
    assert ws.recv()[0] == CLOSE
    ws.close_notify()


def _disconnect_then_answer_the_servers_close_frame_late(ws):
    # A slow client: it answers the server's close frame only once the server has had every
    # chance to end the TLS connection (a server that does not wait for the answer has).
    ws.send(BINARY, DISCONNECT)
    assert ws.recv()[0] == CLOSE
    ws.server_closes_tls()
    try:
        ws.close_frame()
    except OSError:
        pass  # the server is gone: nothing to answer
    ws.close_notify()


def _disconnect_then_drop_the_socket(ws):
    ws.send(BINARY, DISCONNECT)
    ws.tls.close()  # no close frame, no TLS close_notify


def _tls_close_notify_first(ws):
    ws.close_notify()


def _reset(ws):
    ws.reset()


@pytest.mark.parametrize(
    "close",
    [_disconnect_close_frame_then_tls, _close_frame_without_disconnect, _disconnect_then_answer_the_servers_close_frame_late,
     _disconnect_then_drop_the_socket, _tls_close_notify_first, _reset],
)  # fmt: skip
def test_a_client_closing_in_any_order_logs_nothing_above_debug(emulator_thread, caplog, close):
    emu = emulator_thread.emulator
    caplog.set_level(logging.DEBUG)
    ws = RawWebSocket(emu)
    start = len(caplog.records)  # from here on: the closing
    close(ws)
    wait_for(lambda: not emu.registry.is_connected("device1"))
    emulator_thread.stop()  # every connection task has ended, and said what it had to say
    transport = ("asyncio", "hypercorn", "azure_iot_harness.https", "azure_iot_harness.mqtt")
    noise = [
        r for r in caplog.records[start:]
        if r.levelno > logging.INFO or r.exc_info or (r.name.startswith(transport) and r.levelno > logging.DEBUG)
    ]  # fmt: skip
    assert noise == [], [f"{r.levelname} {r.name}: {r.getMessage()}" for r in noise]
