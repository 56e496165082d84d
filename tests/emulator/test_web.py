"""The HTTPS app's own behaviour: health, CA, unknown routes (shutdown: tests/emulator/tls/test_https.py)."""

from __future__ import annotations

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
