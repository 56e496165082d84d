"""The one DPS device client, for the client programs and the conformance suite alike:
registration over MQTT (paho, through `MqttLink`) or over the device REST API (http.client),
attested with a SAS token (an individual key, or one derived from a group key) or an X.509
certificate. It registers, then polls with the operation id after each retry-after until DPS
assigns the registration, retrying throttled (429) and failed (5xx) requests the same way; any
other answer is a `CommandError` naming DPS's status, error code and message. `log` receives a
line for each step (the programs print them; the suite passes nothing).

Conformance imports this from `clients` (an allowed direction) because the client needs the
MQTT link and the TLS failure texts the programs share; `running` stays free of paho.
"""

from __future__ import annotations

import http.client
import json
import queue
import re
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..emulator.protocol import sas
from ..running.errors import CommandError
from .failures import tls_failure
from .link import MqttLink
from .tls import tls_context

if TYPE_CHECKING:
    from ..running.lookup import RunningEmulator

MQTT_API_VERSION = "2019-03-31"  # what the Python SDK and DPS's MQTT docs use
REST_API_VERSION = "2021-06-01"
GLOBAL_HOST = "global.azure-devices-provisioning.net"
REGISTER_TOPIC = "$dps/registrations/PUT/iotdps-register/?$rid={rid}"
POLL_TOPIC = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}"
RESPONSE_FILTER = "$dps/registrations/res/#"
_RESPONSE = re.compile(r"^\$dps/registrations/res/(\d+)/\?(.*)$")

Log = Callable[[str], None]
# One request: given the operation id to poll (None: register) and the deadline, the answer's
# label for the log, status, retry-after and body.
Send = Callable[[str | None, float], tuple[str, int, str | None, dict[str, Any]]]


def quiet(line: str) -> None:
    """A `log` that drops every line."""


@dataclass
class DpsTarget:
    """One registration's connection to DPS."""

    address: str  # where the connection goes (and the TLS name)
    port: int
    ca_file: str | None  # None: the system's CA store
    id_scope: str
    registration_id: str
    device_key: str | None = None  # individual key, or derived from the group key
    cert_file: str | None = None
    key_file: str | None = None
    emulator: RunningEmulator | None = None  # zero-config: the hub after assignment is the emulator's

    @property
    def auth(self) -> str:
        return "X.509" if self.cert_file else "SAS"

    def token(self, ttl: int) -> str | None:
        if self.device_key is None:
            return None
        return sas.generate(f"{self.id_scope}/registrations/{self.registration_id}", self.device_key, key_name="registration", ttl=ttl)

    def mqtt_username(self) -> str:
        client = urllib.parse.quote(f"azure-iot-harness/{__version__}", safe="")
        return f"{self.id_scope}/registrations/{self.registration_id}/api-version={MQTT_API_VERSION}&ClientVersion={client}"

    def ssl_context(self) -> ssl.SSLContext:
        return tls_context(self.ca_file, self.cert_file, self.key_file)

    def describe(self, scheme: str) -> str:
        return f"{scheme}://{self.address}:{self.port} as registration {self.registration_id} (ID scope {self.id_scope}, {self.auth})"


def registration_body(registration_id: str, payload: Any = None) -> bytes:
    """The register request: the registration id and the custom allocation payload (JSON null when none)."""
    return json.dumps({"registrationId": registration_id, "payload": payload}).encode()


def parse_response_topic(topic: str) -> tuple[int, dict[str, str]] | None:
    """(status, query) of `$dps/registrations/res/{status}/?$rid=…[&retry-after=…]`."""
    m = _RESPONSE.match(topic)
    if not m:
        return None
    params = dict(part.partition("=")[::2] for part in m.group(2).split("&") if part)
    return int(m.group(1)), params


def dps_failure(status: int, body: object) -> CommandError:
    """A DPS error answer, naming its status, error code and message."""
    if isinstance(body, dict):
        code, message = body.get("errorCode"), body.get("message") or body.get("Message")
        if code is not None:
            return CommandError(f"DPS answered {status} with error {code}: {message}")
    return CommandError(f"DPS answered {status}: {str(body)[:300]}")


def assignment_result(body: dict[str, Any]) -> dict[str, Any]:
    """The registrationState of a final answer; CommandError when it is not `assigned`."""
    state: dict[str, Any] = body.get("registrationState") or {}
    status = body.get("status") or state.get("status")
    if status == "assigned":
        return state
    if status == "failed":
        raise CommandError(f"DPS could not assign the registration: error {state.get('errorCode')}: {state.get('errorMessage')}")
    raise CommandError(f"DPS answered with status {status!r}: {json.dumps(body)[:300]}")


def follow(send: Send, timeout: float, log: Log = quiet) -> dict[str, Any]:
    """Register, then follow DPS's answers until the registration is assigned: 202 (assigning)
    is polled with its operation id, 429 and 5xx are sent again, each after the answer's
    retry-after (2 s when it gives none). The registrationState of the assignment."""
    deadline = time.monotonic() + timeout
    operation: str | None = None
    while True:
        label, status, retry_after, answer = send(operation, deadline)
        if status == 200:
            log(f"{label} {status}: {answer.get('status')}")
            return assignment_result(answer)
        log(f"{label} {status}: {json.dumps(answer)}")
        if status not in (202, 429) and status < 500:
            raise dps_failure(status, answer)
        wait = float(retry_after or 2)
        if time.monotonic() + wait > deadline:
            raise CommandError(f"DPS did not assign the registration within {timeout:g} s")
        time.sleep(wait)
        if status == 202 and answer.get("operationId"):
            operation = str(answer["operationId"])


# ---- over MQTT ---------------------------------------------------------------------------------


def register_mqtt(dps: DpsTarget, body: bytes, *, timeout: float = 60.0, ttl: int = 3600, log: Log = quiet) -> dict[str, Any]:
    """Register over MQTT: client id = registration id, the DPS username, a SAS password or the
    certificate; requests on `$dps/registrations/…`, answers on the response filter."""
    link = MqttLink(
        address=dps.address,
        port=dps.port,
        client_id=dps.registration_id,
        username=dps.mqtt_username(),
        password=dps.token(ttl),
        tls=dps.ssl_context(),
        ca_file=dps.ca_file,
        what="DPS",
    )
    answers: queue.Queue[Any] = queue.Queue()
    link.on_message = answers.put
    link.connect()
    log(f"connected to {dps.describe('mqtts')}")
    rid = 0

    def send(operation: str | None, deadline: float) -> tuple[str, int, str | None, dict[str, Any]]:
        nonlocal rid
        rid += 1
        topic, payload = (POLL_TOPIC.format(rid=rid, op=operation), b"") if operation else (REGISTER_TOPIC.format(rid=rid), body)
        link.publish(topic, payload, qos=1)
        log(f"published {topic}")
        status, params, answer = _mqtt_answer(link, answers, str(rid), deadline)
        return "answer", status, params.get("retry-after"), answer

    try:
        link.subscribe(RESPONSE_FILTER, qos=1)
        return follow(send, timeout, log)
    finally:
        link.close()


def _mqtt_answer(link: MqttLink, answers: queue.Queue[Any], rid: str, deadline: float) -> tuple[int, dict[str, str], dict[str, Any]]:
    """The answer to request `rid`: (status, topic parameters, body)."""
    while True:
        try:
            msg = answers.get(timeout=max(0.0, min(deadline - time.monotonic(), 0.5)))
        except queue.Empty:
            if not link.connected:
                raise CommandError("DPS closed the connection") from None
            if time.monotonic() >= deadline:
                raise CommandError("DPS did not answer in time") from None
            continue
        parsed = parse_response_topic(msg.topic)
        if parsed is None or parsed[1].get("$rid") != rid:
            continue
        return parsed[0], parsed[1], parse_answer(msg.payload)


def parse_answer(payload: bytes | str | None) -> dict[str, Any]:
    """An answer's JSON object; {"raw": text} when it is not one."""
    try:
        answer = json.loads(payload or b"{}")
    except ValueError:
        text = payload.decode(errors="replace") if isinstance(payload, bytes) else str(payload)
        return {"raw": text[:300]}
    return answer if isinstance(answer, dict) else {"raw": answer}


# ---- over the device REST API --------------------------------------------------------------------


def register_rest(dps: DpsTarget, body: bytes, *, timeout: float = 60.0, ttl: int = 3600, log: Log = quiet) -> dict[str, Any]:
    """Register over HTTPS: `PUT /{scope}/registrations/{id}/register`, then `GET …/operations/{id}`,
    with the SAS token in `Authorization` or the certificate in the TLS handshake."""
    base = f"/{urllib.parse.quote(dps.id_scope, safe='')}/registrations/{urllib.parse.quote(dps.registration_id, safe='')}"
    query = f"?api-version={REST_API_VERSION}"
    log(f"using {dps.describe('https')}")

    def send(operation: str | None, deadline: float) -> tuple[str, int, str | None, dict[str, Any]]:
        if operation:
            method, path, payload = "GET", f"{base}/operations/{urllib.parse.quote(operation, safe='')}{query}", None
        else:
            method, path, payload = "PUT", f"{base}/register{query}", body
        status, headers, answer = _rest_call(dps, method, path, payload, ttl)
        return f"{method} {path} ->", status, headers.get("retry-after"), answer

    return follow(send, timeout, log)


def _rest_call(dps: DpsTarget, method: str, path: str, body: bytes | None, ttl: int) -> tuple[int, dict[str, str], dict[str, Any]]:
    headers = {"Accept": "application/json", "User-Agent": "azure-iot-harness"}
    if body is not None:
        headers.update({"Content-Type": "application/json", "Content-Encoding": "utf-8"})
    token = dps.token(ttl)
    if token:
        headers["Authorization"] = token
    conn = http.client.HTTPSConnection(dps.address, dps.port, context=dps.ssl_context(), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        answer_headers = {k.lower(): v for k, v in resp.getheaders()}
    except (OSError, ssl.SSLError) as exc:
        raise tls_failure(exc, dps.address, dps.port, dps.ca_file, "DPS") from None
    except http.client.HTTPException as exc:
        raise CommandError(f"DPS at {dps.address}:{dps.port} answered something that is not HTTP: {exc}") from None
    finally:
        conn.close()
    return resp.status, answer_headers, parse_answer(raw if raw.strip() else None)
