"""The workload API's refusals, with iotedged's status codes (API version 2019-01-30)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.error
import urllib.request

import pytest

from .edge_helpers import add_module, start_edge

SIGN = {"keyId": "primary", "algo": "HMACSHA256", "data": base64.b64encode(b"to sign").decode()}


@pytest.fixture
def edge():
    thread, emu = start_edge()
    yield thread, emu
    thread.stop()


def _call(emu, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{emu.edge.workload.port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_signing_with_the_module_key(edge):
    thread, emu = edge
    doc = add_module(thread, emu, "signer")
    status, body = _call(emu, "POST", f"/modules/signer/genid/{doc['generationId']}/sign?api-version=2019-01-30", SIGN)
    key = base64.b64decode(doc["authentication"]["symmetricKey"]["primaryKey"])
    assert status == 200 and body["digest"] == base64.b64encode(hmac.new(key, b"to sign", hashlib.sha256).digest()).decode()


@pytest.mark.parametrize(
    "case, path, body, expected",
    [
        ("unknown module", "/modules/ghost/genid/{genid}/sign?api-version=2019-01-30", SIGN, 404),
        ("wrong generation id", "/modules/signer/genid/1/sign?api-version=2019-01-30", SIGN, 404),
        ("unknown key id", "/modules/signer/genid/{genid}/sign?api-version=2019-01-30", {**SIGN, "keyId": "tertiary"}, 404),
        ("no api-version", "/modules/signer/genid/{genid}/sign", SIGN, 400),
        ("unknown api-version", "/modules/signer/genid/{genid}/sign?api-version=2099-01-01", SIGN, 400),
        ("malformed body", "/modules/ghost/genid/{genid}/sign?api-version=2019-01-30", {"keyId": "primary"}, 400),
        ("other algorithm", "/modules/signer/genid/{genid}/sign?api-version=2019-01-30", {**SIGN, "algo": "RSA"}, 400),
    ],
)
def test_refusals(edge, case, path, body, expected):
    thread, emu = edge
    doc = add_module(thread, emu, "signer")
    status, answer = _call(emu, "POST", path.format(genid=doc["generationId"]), body)
    assert status == expected, case
    assert answer["message"]


def test_trust_bundle_needs_an_api_version(edge):
    thread, emu = edge
    assert _call(emu, "GET", "/trust-bundle?api-version=2019-01-30")[0] == 200
    assert _call(emu, "GET", "/trust-bundle")[0] == 400
