"""Device Provisioning Service registration, three ways: raw MQTT (paho), the device REST API
(http.client), and the official SDK's ProvisioningDeviceClient. Each returns the assignment."""

from __future__ import annotations

import http.client
import json
import queue
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ..emulator.protocol import sas
from .variants import Refused, paho_client

MQTT_API = "2019-03-31"
REST_API = "2021-06-01"


@dataclass(frozen=True)
class DpsEndpoint:
    host: str  # where to connect; also the TLS server name
    mqtt_port: int
    https_port: int
    id_scope: str
    ca_file: str | None


@dataclass(frozen=True)
class Registrant:
    registration_id: str
    key: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


def _token(dps: DpsEndpoint, reg: Registrant) -> str | None:
    if not reg.key:
        return None
    return sas.generate(f"{dps.id_scope}/registrations/{reg.registration_id}", reg.key, key_name="registration", ttl=3600)


def _ctx(dps: DpsEndpoint, reg: Registrant) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=dps.ca_file) if dps.ca_file else ssl.create_default_context()
    if reg.cert_file:
        ctx.load_cert_chain(reg.cert_file, reg.key_file)
    return ctx


def register_mqtt(dps: DpsEndpoint, reg: Registrant, timeout: float = 60) -> dict:
    client = paho_client(reg.registration_id)
    client.username_pw_set(f"{dps.id_scope}/registrations/{reg.registration_id}/api-version={MQTT_API}", _token(dps, reg))
    client.tls_set_context(_ctx(dps, reg))
    answers: "queue.Queue[tuple[int, dict, dict]]" = queue.Queue()
    connack: "queue.Queue[int]" = queue.Queue()

    def on_message(c: Any, u: Any, msg: Any) -> None:
        head, _, query = msg.topic.partition("/?")
        answers.put((int(head.rsplit("/", 1)[1]), dict(urllib.parse.parse_qsl(query)), json.loads(msg.payload or b"{}")))

    client.on_connect = lambda c, u, f, rc, *r: connack.put(int(rc))
    client.on_message = on_message
    client.connect(dps.host, dps.mqtt_port)
    client.loop_start()
    try:
        rc = connack.get(timeout=15)
        if rc != 0:
            raise Refused(rc, f"DPS CONNACK {rc}")
        client.subscribe("$dps/registrations/res/#", 1)
        time.sleep(0.2)
        body = json.dumps({"registrationId": reg.registration_id})
        client.publish("$dps/registrations/PUT/iotdps-register/?$rid=1", body, qos=1)
        deadline = time.monotonic() + timeout
        rid = 1
        while True:
            status, params, doc = answers.get(timeout=max(0.1, deadline - time.monotonic()))
            if status >= 300:
                raise AssertionError(f"DPS answered {status}: {doc}")
            if doc.get("status") == "assigned":
                return doc["registrationState"]
            if doc.get("status") not in ("assigning", None):
                raise AssertionError(f"registration ended {doc.get('status')}: {doc}")
            time.sleep(min(float(params.get("retry-after", 1)), 3))
            rid += 1
            client.publish(
                f"$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={doc['operationId']}", b"", qos=1
            )
    finally:
        client.disconnect()
        client.loop_stop()


def register_rest(dps: DpsEndpoint, reg: Registrant, timeout: float = 60) -> dict:
    base = f"/{dps.id_scope}/registrations/{urllib.parse.quote(reg.registration_id, safe='')}"
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    token = _token(dps, reg)
    if token:
        headers["Authorization"] = token

    def call(method: str, path: str, body: Any = None) -> tuple[int, dict, dict]:
        conn = http.client.HTTPSConnection(dps.host, dps.https_port, context=_ctx(dps, reg), timeout=30)
        try:
            conn.request(method, f"{path}?api-version={REST_API}", body=json.dumps(body) if body is not None else None, headers=headers)
            resp = conn.getresponse()
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"{}")
        finally:
            conn.close()

    status, hdrs, doc = call("PUT", base + "/register", {"registrationId": reg.registration_id})
    deadline = time.monotonic() + timeout
    while True:
        if status >= 300:
            raise AssertionError(f"DPS answered {status}: {doc}")
        if doc.get("status") == "assigned":
            return doc["registrationState"]
        if doc.get("status") != "assigning" or time.monotonic() > deadline:
            raise AssertionError(f"registration ended {doc.get('status')}: {doc}")
        time.sleep(min(float(hdrs.get("Retry-After") or hdrs.get("retry-after") or 1), 3))
        status, hdrs, doc = call("GET", f"{base}/operations/{doc['operationId']}")


def register_sdk(dps: DpsEndpoint, reg: Registrant, timeout: float = 60) -> dict:
    from azure.iot.device import ProvisioningDeviceClient, X509

    ca = open(dps.ca_file).read() if dps.ca_file else None
    kw: dict[str, Any] = {"server_verification_cert": ca} if ca else {}
    if reg.cert_file:
        client = ProvisioningDeviceClient.create_from_x509_certificate(
            provisioning_host=dps.host, registration_id=reg.registration_id, id_scope=dps.id_scope,
            x509=X509(cert_file=reg.cert_file, key_file=reg.key_file), **kw)
    else:
        client = ProvisioningDeviceClient.create_from_symmetric_key(
            provisioning_host=dps.host, registration_id=reg.registration_id, id_scope=dps.id_scope, symmetric_key=reg.key, **kw)
    result = client.register()
    assert result.status == "assigned", f"registration ended {result.status}"
    state = result.registration_state
    return {"assignedHub": state.assigned_hub, "deviceId": state.device_id}


REGISTER = {"mqtt": register_mqtt, "rest": register_rest, "sdk": register_sdk}
