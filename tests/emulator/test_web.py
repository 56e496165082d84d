"""The HTTPS app's own behaviour: health, CA, unknown routes, shutdown with idle connections."""

from __future__ import annotations

import http.client
import logging
import ssl

from azure_iot_harness.emulator.app import EmulatorThread
from tests.helpers import https


def test_health_and_ca_need_no_token(emulator):
    assert https(emulator, "GET", "/_emulator/health", token=False)[2] == {"status": "ok"}
    status, headers, body = https(emulator, "GET", "/_emulator/ca.pem", token=False)
    assert status == 200 and body == emulator.ca_file.read_text()


def test_azure_routes_not_built_yet_say_so(emulator):
    status, headers, body = https(emulator, "GET", "/jobs/v2/job1?api-version=2021-04-12")
    assert status == 501 and headers["iothub-errorcode"] == "NotImplemented"
    assert "not supported by the emulator" in body["Message"]


def test_unknown_route_is_a_json_404(emulator):
    status, headers, body = https(emulator, "GET", "/nothing/here")
    assert status == 404 and body["Message"].startswith("ErrorCode:NotFound;")


def test_wrong_method_is_a_json_404(emulator):
    status, _, body = https(emulator, "POST", "/_emulator/health", {})
    assert status == 404 and "POST /_emulator/health" in body["Message"]


def test_stop_closes_idle_keep_alive_connections(caplog):
    # hypercorn alone would wait for its 5 s keep-alive timeout until HttpsServer.stop gives up
    # and cancels it (logged at debug). How long stop takes is measured in benchmarks/timers.py.
    caplog.set_level(logging.DEBUG, logger="azure_iot_harness")
    thread = EmulatorThread(in_memory=True, mqtt_port=0, https_port=0)
    emu = thread.start()
    ctx = ssl.create_default_context(cafile=str(emu.ca_file))
    conn = http.client.HTTPSConnection("localhost", emu.https_port, context=ctx)
    conn.request("GET", "/_emulator/health")
    assert conn.getresponse().read() == b'{"status":"ok"}'
    thread.stop()
    assert not [m for m in caplog.messages if m.startswith("https server stop:")], "hypercorn's shutdown had to be cancelled"
    conn.sock.settimeout(5)
    assert conn.sock.recv(1) == b""
