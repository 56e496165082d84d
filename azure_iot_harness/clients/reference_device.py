"""`client reference-device`: a complete paho device, conformant to IoT Hub's rules — the
project's reference for `azure-iot-harness certify`.

It reads the certify environment (`AZURE_IOT_CERTIFY_*`, see certify/device.py) or the flags:
provisions through DPS when told to (waiting retry-after, backing off on 5xx, provisioning
again when the hub refuses it, and then connecting to the hub DPS names), connects with clean session 0 and a fresh SAS token each time
(renewed before it expires), subscribes to C2D, methods and the twin, GETs the twin after every
connect and reports back each desired property (Plug and Play `ac`/`av` with `--model-id`),
answers the methods it was given (404 for others), sends JSON telemetry at QoS 1 every
interval, and reconnects with exponential back-off and jitter (at least 1 s, longer after a
refusal that will not go away; reset only after a connection that stayed up). Unacknowledged
QoS 1 messages are resent with DUP after a reconnect (paho keeps them in its session).

Each behaviour is a method, so that the deliberately broken devices of the tests override one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from ..emulator.protocol import sas
from ..running.errors import CommandError
from .link import paho_client
from .tls import tls_context

HELP = "a complete, conformant paho device (telemetry, C2D, twin, methods, reconnects, DPS): certify's reference"
API_VERSION = "2021-04-12"
DPS_API_VERSION = "2019-03-31"
ENV = "AZURE_IOT_CERTIFY_"


@dataclass
class DeviceSettings:
    host: str
    address: str
    port: int
    device_id: str
    ca_file: str | None
    key: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    provisioning: str = "none"
    dps_host: str | None = None
    id_scope: str | None = None
    registration_id: str | None = None
    methods: list[str] = field(default_factory=list)
    telemetry_interval: float = 5.0
    keep_alive: int = 60
    token_ttl: int = 3600
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    connack_timeout: float = 10.0
    stable_seconds: float = 2.0
    model_id: str | None = None
    module_id: str | None = None  # a module identity of the device (an edge module): `{device}/{module}`


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", metavar="NAME", help=f"hub host name (default: ${ENV}HOST)")
    p.add_argument("--address", metavar="ADDR", help=f"where to connect (default: ${ENV}ADDRESS, else the host)")
    p.add_argument("--port", type=int, metavar="N", help=f"MQTT/TLS port (default: ${ENV}PORT or 8883)")
    p.add_argument("--device-id", metavar="ID", help=f"(default: ${ENV}DEVICE_ID)")
    p.add_argument("--ca-file", metavar="FILE", help=f"(default: ${ENV}CA_FILE)")
    p.add_argument("--key", metavar="B64", help=f"the device key (default: ${ENV}DEVICE_KEY)")
    p.add_argument("--methods", metavar="A,B", help=f"methods to answer (default: ${ENV}METHODS)")
    p.add_argument("--telemetry-interval", type=float, metavar="S", help=f"(default: ${ENV}TELEMETRY_INTERVAL or 5)")
    p.add_argument("--keep-alive", type=int, default=60, metavar="S", help="MQTT keep-alive (default: 60)")
    p.add_argument("--token-ttl", type=int, default=3600, metavar="S", help="SAS token lifetime; renewed at 80%% (default: 3600)")
    p.add_argument("--backoff-base", type=float, default=1.0, metavar="S", help="first reconnect delay (default: 1)")
    p.add_argument("--backoff-cap", type=float, default=30.0, metavar="S", help="longest reconnect delay (default: 30)")
    p.add_argument("--stable-seconds", type=float, default=2.0, metavar="S",
                   help="a connection up this long resets the back-off (default: 2)")
    p.add_argument("--connack-timeout", type=float, default=10.0, metavar="S", help="give up on a CONNECT after S s (default: 10)")
    p.add_argument("--model-id", metavar="DTMI", help="announce a Plug and Play model (writable properties acknowledged with ac/av)")


def settings_from(args: argparse.Namespace | None = None, env: dict[str, str] | None = None) -> DeviceSettings:
    env = dict(os.environ if env is None else env)

    def pick(name: str, flag: Any = None, default: Any = None) -> Any:
        return flag if flag not in (None, "") else env.get(ENV + name) or default

    a = args or argparse.Namespace()
    host = pick("HOST", getattr(a, "host", None))
    device_id = pick("DEVICE_ID", getattr(a, "device_id", None))
    if not host or not device_id:
        raise CommandError(f"give --host and --device-id (or run under certify: ${ENV}HOST, ${ENV}DEVICE_ID)", 2)
    methods = pick("METHODS", getattr(a, "methods", None), "")
    return DeviceSettings(
        host=host,
        address=pick("ADDRESS", getattr(a, "address", None), host),
        port=int(pick("PORT", getattr(a, "port", None), 8883)),
        device_id=device_id,
        ca_file=pick("CA_FILE", getattr(a, "ca_file", None)),
        key=pick("DEVICE_KEY", getattr(a, "key", None)),
        cert_file=pick("CERT_FILE"),
        key_file=pick("KEY_FILE"),
        provisioning=pick("PROVISIONING", None, "none"),
        dps_host=pick("DPS_HOST"),
        id_scope=pick("ID_SCOPE"),
        registration_id=pick("REGISTRATION_ID"),
        methods=[m for m in methods.split(",") if m],
        telemetry_interval=float(pick("TELEMETRY_INTERVAL", getattr(a, "telemetry_interval", None), 5.0)),
        keep_alive=getattr(a, "keep_alive", 60),
        token_ttl=getattr(a, "token_ttl", 3600),
        backoff_base=getattr(a, "backoff_base", 1.0),
        backoff_cap=getattr(a, "backoff_cap", 30.0),
        stable_seconds=getattr(a, "stable_seconds", 2.0),
        connack_timeout=getattr(a, "connack_timeout", 10.0),
        model_id=getattr(a, "model_id", None),
        module_id=pick("MODULE_ID"),
    )


class Stop(BaseException):
    """SIGTERM: leave the loops (a BaseException: paho's loop swallows Exceptions raised in select)."""


class ReferenceDevice:
    clean_session = False

    def __init__(self, s: DeviceSettings) -> None:
        self.s = s
        self.client: Any = None
        self.connack: int | None = None
        self.connected = False
        self.session_present = False
        self.seq = 0
        self.rid = 0
        self.pending_twin: dict[str, tuple[str, bytes]] = {}  # rid → (topic, payload), resent after a 429
        self.desired_version = 0
        self.token_expires = 0.0
        self.renew = False
        self.rng = random.Random()

    # ---- output ------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)

    # ---- credentials and TLS -------------------------------------------------------------------

    def tls(self) -> ssl.SSLContext:
        return tls_context(self.s.ca_file, self.s.cert_file, self.s.key_file)

    def token(self) -> str | None:
        if not self.s.key:
            return None
        self.token_expires = time.time() + self.s.token_ttl
        return sas.generate(f"{self.s.host}/devices/{self.identity_path()}", self.s.key, ttl=self.s.token_ttl)

    def identity_path(self) -> str:
        """`{device}` or `{device}/modules/{module}`: the token's resource and the telemetry topic's."""
        return self.s.device_id + (f"/modules/{self.s.module_id}" if self.s.module_id else "")

    def client_id(self) -> str:
        return self.s.device_id + (f"/{self.s.module_id}" if self.s.module_id else "")

    def username(self) -> str:
        query = f"api-version={API_VERSION}&DeviceClientType={urllib.parse.quote('azure-iot-harness-reference/1', safe='')}"
        if self.s.model_id:
            query += "&model-id=" + urllib.parse.quote(self.s.model_id, safe="")
        return f"{self.s.host}/{self.client_id()}/?{query}"

    # ---- the connection ------------------------------------------------------------------------

    def new_client(self) -> Any:
        client = paho_client(self.client_id(), clean_session=self.clean_session)
        client.tls_set_context(self.tls())
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def client_for_attempt(self) -> Any:
        """One paho client for the whole run: its session keeps unacknowledged messages."""
        if self.client is None:
            self.client = self.new_client()
        return self.client

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: int, *rest: Any) -> None:
        self.connack = int(rc)
        self.session_present = bool((flags or {}).get("session present"))

    def _on_disconnect(self, client: Any, userdata: Any, rc: Any, *rest: Any) -> None:
        self.connected = False

    def connect_once(self) -> int | None:
        """One attempt: the CONNACK code, or None (network error, no CONNACK in time)."""
        client = self.client_for_attempt()
        client.username_pw_set(self.username(), self.token())
        self.connack = None
        self.connected = True
        try:
            client.connect(self.s.address, self.s.port, keepalive=self.s.keep_alive)
        except (OSError, ssl.SSLError) as exc:
            self.say(f"connect failed: {exc}")
            self.connected = False
            return None
        deadline = time.monotonic() + self.s.connack_timeout
        while self.connack is None and self.connected and time.monotonic() < deadline:
            client.loop(0.1)
        if self.connack is None:
            self.say("no CONNACK: giving up on this attempt")
            self.drop_socket()
            return None
        if self.connack != 0:
            self.drop_socket()
        return self.connack

    def drop_socket(self) -> None:
        sock = self.client.socket() if self.client is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _ in range(20):
            if not self.connected:
                break
            self.client.loop(0.05)
        self.connected = False

    def delay(self, attempt: int, code: int | None) -> float:
        """Exponential back-off with jitter; refusals that will not go away (CONNACK 4/5) wait longer."""
        base = self.s.backoff_base * (4 if code in (4, 5) else 1)
        return min(self.s.backoff_cap, base * 2 ** (attempt - 1)) * self.rng.uniform(1.0, 1.25)

    # ---- after CONNACK 0 -------------------------------------------------------------------------

    def subscriptions(self) -> list[tuple[str, int]]:
        c2d = [] if self.s.module_id else [(f"devices/{self.s.device_id}/messages/devicebound/#", 1)]  # modules get no C2D
        return [*c2d, ("$iothub/methods/POST/#", 0), ("$iothub/twin/res/#", 0), ("$iothub/twin/PATCH/properties/desired/#", 0)]

    def on_connected(self) -> None:
        self.client.subscribe(self.subscriptions())
        self.twin_request("$iothub/twin/GET/?$rid={rid}", b"")

    def next_rid(self) -> str:
        self.rid += 1
        return str(self.rid)

    def twin_request(self, topic: str, payload: bytes) -> None:
        rid = self.next_rid()
        full = topic.format(rid=rid)
        self.pending_twin[rid] = (topic, payload)
        self.client.publish(full, payload, qos=0)

    def telemetry_topic(self) -> str:
        return f"devices/{self.identity_path()}/messages/events/$.ct=application%2Fjson&$.ce=utf-8"

    def send_telemetry(self) -> None:
        self.seq += 1
        body = json.dumps({"seq": self.seq, "boot": self.boot, "temperature": round(20 + self.rng.random() * 5, 2)})
        self.client.publish(self.telemetry_topic(), body, qos=self.telemetry_qos())

    def telemetry_qos(self) -> int:
        return 1

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        topic: str = msg.topic
        try:
            if "/messages/devicebound/" in topic:
                self.on_c2d(msg)
            elif topic.startswith("$iothub/methods/POST/"):
                name, _, query = topic[len("$iothub/methods/POST/"):].partition("/")
                self.on_method(name, _param(query, "$rid"), msg.payload)
            elif topic.startswith("$iothub/twin/res/"):
                status, _, query = topic[len("$iothub/twin/res/"):].partition("/")
                self.on_twin_answer(int(status), _param(query, "$rid"), msg.payload)
            elif topic.startswith("$iothub/twin/PATCH/properties/desired/"):
                self.on_desired(json.loads(msg.payload or b"{}"))
        except (ValueError, KeyError) as exc:
            self.say(f"cannot handle {topic}: {exc}")

    def on_c2d(self, msg: Any) -> None:
        self.say(f"C2D on {msg.topic}: {msg.payload[:80]!r}")  # paho PUBACKs it when this returns

    def on_method(self, name: str, rid: str, payload: bytes) -> None:
        status = 200 if name in self.s.methods else 404
        body = {"result": f"{name} done"} if status == 200 else {"error": f"no method {name}"}
        self.answer_method(status, rid, body)

    def answer_method(self, status: int, rid: str, body: Any) -> None:
        self.client.publish(f"$iothub/methods/res/{status}/?$rid={rid}", json.dumps(body), qos=0)

    def on_twin_answer(self, status: int, rid: str, payload: bytes) -> None:
        request = self.pending_twin.pop(rid, None)
        if status == 429 and request is not None:
            self.say("twin request throttled (429): retrying in 1-2 s")
            self.retry_at.append((time.monotonic() + 1 + self.rng.random(), request))
            return
        if status == 200 and payload:
            doc = json.loads(payload)
            self.on_desired(doc.get("desired") or {}, full=True)

    def on_desired(self, desired: dict[str, Any], full: bool = False) -> None:
        version = int(desired.get("$version", 0))
        if full and version <= self.desired_version:
            return
        self.desired_version = max(self.desired_version, version)
        patch = {k: v for k, v in desired.items() if not k.startswith("$")}
        if not patch:
            return
        if self.s.model_id:
            patch = {k: {"value": v, "ac": 200, "av": version, "ad": "applied"} for k, v in patch.items()}
        self.report(patch)

    def report(self, patch: dict[str, Any]) -> None:
        self.twin_request("$iothub/twin/PATCH/properties/reported/?$rid={rid}", json.dumps(patch).encode())

    # ---- DPS -------------------------------------------------------------------------------------

    def provision(self) -> None:
        """Register until assigned: retry-after obeyed, 5xx backed off; sets host and device id."""
        from .dps_client import DpsTarget

        reg = self.s.registration_id or self.s.device_id
        target = DpsTarget(self.s.address, self.s.port, self.s.ca_file, self.s.id_scope or "", reg, self.s.key, self.s.cert_file,
                           self.s.key_file)
        attempt = 0
        while True:
            attempt += 1
            answers: list[tuple[int, dict[str, str], dict[str, Any]]] = []
            client = paho_client(reg, clean_session=True)
            client.tls_set_context(self.tls())
            client.username_pw_set(f"{self.s.id_scope}/registrations/{reg}/api-version={DPS_API_VERSION}", target.token(3600))
            client.user_data_set(answers)
            client.on_message = _dps_answer
            try:
                client.connect(self.s.address, self.s.port, keepalive=60)
                client.subscribe("$dps/registrations/res/#", 1)
                state = self._register(client, answers, reg)
            except (OSError, ssl.SSLError) as exc:
                self.say(f"DPS connection failed: {exc}")
                state = None
            finally:
                try:
                    client.disconnect()
                    client.loop(0.1)
                except OSError:
                    pass
            if state is not None:
                if state["assignedHub"].lower() != self.s.host.lower():  # another hub: reach it by its name
                    self.s.address = state["assignedHub"]
                self.s.host, self.s.device_id = state["assignedHub"], state["deviceId"]
                self.say(f"provisioned: {self.s.device_id} on {self.s.host}")
                return
            self.sleep(self.delay(attempt, None))

    def _register(self, client: Any, answers: list, reg: str) -> dict[str, Any] | None:
        body = json.dumps({"registrationId": reg, "payload": None})
        operation: str | None = None
        failures = 0
        while True:
            rid = self.next_rid()
            if operation:
                client.publish(f"$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={operation}", b"", qos=1)
            else:
                client.publish(f"$dps/registrations/PUT/iotdps-register/?$rid={rid}", body, qos=1)
            deadline = time.monotonic() + 30
            answer = None
            while answer is None and time.monotonic() < deadline:
                client.loop(0.1)
                answer = next((a for a in answers if a[1].get("$rid") == rid), None)
            if answer is None:
                return None
            status, params, doc = answer
            if status == 200:
                state = doc.get("registrationState") or {}
                return state if doc.get("status") == "assigned" else None
            retry_after = params.get("retry-after")
            if status == 202:
                operation = doc.get("operationId") or operation
                self.wait_dps(client, float(retry_after or 2))
            elif status == 429 or status >= 500:
                failures += 1
                wait = float(retry_after) if retry_after else self.delay(failures, None)
                self.say(f"DPS answered {status}: again in {wait:.1f} s")
                self.wait_dps(client, wait)
            else:
                self.say(f"DPS answered {status}: {doc}")
                return None

    def reprovision_after(self, code: int | None) -> bool:
        """Register with DPS again after this refusal: the hub no longer knows the device (CONNACK 5)."""
        return code == 5 and self.s.provisioning == "dps"

    def wait_dps(self, client: Any, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            client.loop(min(0.1, max(0.0, end - time.monotonic())))

    # ---- the run ---------------------------------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(0.1, end - time.monotonic()))

    def run(self) -> int:
        self.boot = int(time.time())
        self.retry_at: list[tuple[float, tuple[str, bytes]]] = []
        need_provision = self.s.provisioning == "dps"
        attempt = 0
        while True:
            if need_provision:
                self.provision()
                need_provision = False
            code = self.connect_once()
            if code == 0:
                self.say(f"connected to {self.s.address}:{self.s.port} as {self.s.device_id}")
                since = time.monotonic()
                self.serve()
                if time.monotonic() - since >= self.s.stable_seconds:
                    attempt = 0
                if self.renew:
                    self.renew = False
                    continue  # our own disconnect, to renew the token: connect again at once
            else:
                self.say(f"connection attempt failed: {'CONNACK ' + str(code) if code is not None else 'no answer'}")
                need_provision = self.reprovision_after(code)
            attempt += 1
            wait = self.delay(attempt, code)
            self.say(f"reconnecting in {wait:.2f} s")
            self.sleep(wait)

    def serve(self) -> None:
        """Until the connection ends: telemetry every interval, answers, twin retries, renewal."""
        self.on_connected()
        next_send = time.monotonic()
        while self.connected:
            now = time.monotonic()
            if now >= next_send:
                self.send_telemetry()
                next_send = now + self.s.telemetry_interval
            for item in [r for r in self.retry_at if r[0] <= now]:
                self.retry_at.remove(item)
                self.twin_request(*item[1])
            if self.s.key and self.token_expires and time.time() > self.token_expires - 0.2 * self.s.token_ttl:
                self.say("renewing the SAS token")
                self.renew = True
                self.client.disconnect()
            rc = self.client.loop(0.1)
            if rc != 0:
                self.connected = False
        self.say("disconnected")


def _dps_answer(client: Any, answers: list, msg: Any) -> None:
    from .dps_client import parse_answer, parse_response_topic

    status, params = parse_response_topic(msg.topic) or (0, {})
    answers.append((status, params, parse_answer(msg.payload)))


def _param(query: str, name: str) -> str:
    m = re.search(r"(?:^|[?&])" + re.escape(name) + r"=([^&]*)", query)
    return urllib.parse.unquote(m.group(1)) if m else ""


def main(device_class: type[ReferenceDevice] = ReferenceDevice, argv: list[str] | None = None) -> int:
    """Run a device class as a program (the broken devices of the tests call this)."""
    p = argparse.ArgumentParser(description=HELP)
    add_arguments(p)
    args = p.parse_args(argv)
    return run_device(device_class(settings_from(args)))


def run_device(device: ReferenceDevice) -> int:
    def stop(*_: Any) -> None:
        raise Stop

    signal.signal(signal.SIGTERM, stop)
    try:
        return device.run()
    except (Stop, KeyboardInterrupt):
        return 0


def run(args: argparse.Namespace) -> int:
    return run_device(ReferenceDevice(settings_from(args)))
