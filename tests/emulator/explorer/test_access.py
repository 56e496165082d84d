"""Who may use the explorer: loopback browsers at once (under loopback host names only), anyone
else after giving the iothubowner connection string; API calls need the explorer's header."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator

import pytest

from azure_iot_harness.config import WELL_KNOWN_POLICIES
from azure_iot_harness.emulator.app import Emulator, EmulatorThread
from azure_iot_harness.emulator.explorer.access import Access, is_loopback, parse_connection_string

API = "/api/hub/devices?api-version=2021-04-12"


def request(emu: Emulator, method: str, path: str, *, headers: dict | None = None, body: str | None = None) -> tuple[int, dict, str]:
    url = urllib.parse.urlsplit(emu.explorer_url)
    conn = http.client.HTTPConnection("127.0.0.1", url.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


@pytest.fixture
def open_thread() -> Iterator[EmulatorThread]:
    thread = EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, explorer=True, host_names=["MyHub.example.net"])
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture
def open_explorer(open_thread: EmulatorThread) -> Emulator:
    return open_thread.emulator


@pytest.fixture
def guarded_explorer() -> Iterator[Emulator]:
    """The explorer on every address (the hub stays on loopback): it asks who is there."""
    thread = EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, explorer=True, explorer_bind="0.0.0.0")
    try:
        yield thread.start()
    finally:
        thread.stop()


def test_loopback_explorer_answers_at_once_under_loopback_names(open_explorer: Emulator) -> None:
    emu = open_explorer
    assert emu.info()["explorer"] == {"url": emu.explorer_url, "signIn": False}
    assert emu.explorer_url.startswith("http://127.0.0.1:")
    status, _, page = request(emu, "GET", "/devices")
    assert status == 200 and 'data-page="devices"' in page
    status, _, body = request(emu, "GET", API, headers={"X-Explorer": "1"})
    assert status == 200 and "device1" in [d["deviceId"] for d in json.loads(body)]
    for host in ("localhost", "[::1]:8080", "127.0.0.1", "myhub.example.net:8080"):
        assert request(emu, "GET", "/devices", headers={"Host": host})[0] == 200, host
    # A page of another site whose name now points at 127.0.0.1 (DNS rebinding) gets nothing.
    status, _, text = request(emu, "GET", API, headers={"Host": "attacker.example", "X-Explorer": "1"})
    assert status == 403 and "loopback host names" in text
    # Without the header (what a form of another site sends) the API refuses.
    status, _, text = request(emu, "POST", "/api/hub/_emulator/c2d/device1", body='{"data": "x"}')
    assert status == 403 and "x-explorer" in text
    assert emu.hub.c2d.pending("device1") == []


def test_api_answers_are_azures_own(open_explorer: Emulator) -> None:
    status, headers, body = request(open_explorer, "GET", "/api/hub/twins/ghost?api-version=2021-04-12", headers={"X-Explorer": "1"})
    assert status == 404 and headers["iothub-errorcode"] == "DeviceNotFound"
    assert json.loads(body)["Message"].startswith("ErrorCode:DeviceNotFound;")
    status, _, body = request(open_explorer, "GET", "/api/dps/enrollmentGroups/symmetric-group1?api-version=2021-10-01", headers={"X-Explorer": "1"})
    assert status == 200 and json.loads(body)["attestation"]["type"] == "symmetricKey"


def test_beyond_loopback_the_explorer_asks_for_the_iothubowner_connection_string(guarded_explorer: Emulator) -> None:
    emu = guarded_explorer
    assert emu.info()["explorer"]["signIn"] is True
    status, headers, _ = request(emu, "GET", "/devices")
    assert status == 303 and headers["location"] == "/login"
    status, headers, body = request(emu, "GET", API, headers={"X-Explorer": "1"})
    assert status == 401 and headers["iothub-errorcode"] == "IotHubUnauthorizedAccess"
    assert request(emu, "GET", "/login")[0] == 200

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for wrong in (emu.connection_string(policy="service"), emu.connection_string(device="device1"), "nonsense"):
        status, headers, page = request(emu, "POST", "/login", headers=form, body=urllib.parse.urlencode({"connectionString": wrong}))
        assert status == 401 and "set-cookie" not in headers and "not this hub" in page, wrong

    given = urllib.parse.urlencode({"connectionString": emu.connection_string(policy="iothubowner")})
    status, headers, _ = request(emu, "POST", "/login", headers=form, body=given)
    assert status == 303 and headers["location"] == "/devices"
    cookie = headers["set-cookie"].split(";", 1)[0]
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=strict" in headers["set-cookie"]
    assert request(emu, "GET", "/devices", headers={"Cookie": cookie})[0] == 200
    assert request(emu, "GET", API, headers={"Cookie": cookie, "X-Explorer": "1"})[0] == 200
    assert request(emu, "GET", API, headers={"Cookie": cookie + "x", "X-Explorer": "1"})[0] == 401

    request(emu, "POST", "/logout", headers={"Cookie": cookie})
    assert request(emu, "GET", API, headers={"Cookie": cookie, "X-Explorer": "1"})[0] == 401


def test_access_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.9.8.7") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("example.com")
    owner = WELL_KNOWN_POLICIES[0]
    assert parse_connection_string(f"HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey={owner.key}")["SharedAccessKey"] == owner.key
    access = Access(owner, login_required=True)
    assert access.sign_in(f"HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey={owner.key[:-2]}==") is None
    session = access.sign_in(f" HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey={owner.key} ")
    assert session and access.signed_in({"cookie": f"other=1; explorer-session={session}"})
    assert not access.signed_in({"cookie": 'explorer-session="'})


def test_reset_keeps_the_explorer_on_its_port(open_thread: EmulatorThread) -> None:
    emu = open_thread.emulator
    url = emu.explorer_url
    status, _, _ = request(emu, "PUT", "/api/hub/devices/gone-after-reset?api-version=2021-04-12",
                           headers={"X-Explorer": "1"}, body='{"deviceId": "gone-after-reset"}')  # fmt: skip
    assert status == 200
    open_thread.call(emu.reset(), timeout=60)
    assert emu.explorer_url == url
    status, _, body = request(emu, "GET", API, headers={"X-Explorer": "1"})
    assert status == 200 and "gone-after-reset" not in body


def test_names_from_the_address_are_escaped_in_the_page(open_explorer: Emulator) -> None:
    status, _, page = request(open_explorer, "GET", "/devices/%3Cscript%3Ealert(1)%22x")
    assert status == 200
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&#34;x" in page
