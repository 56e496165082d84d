"""Running the client variants as a user does (`azure-iot-harness client …` in subprocesses) and
reading what reached the hub through the emulator's telemetry API."""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

import paho.mqtt.client as mqtt

from azure_iot_harness.running.service import https_connection, service_token
from tests.cli_helpers import CliProcess, Serve, cli_env, no_traceback, run_cli
from tests.helpers import wait_for


class ServeWith(Serve):
    """`serve` on ephemeral ports with settings from the environment (DPS answer pacing, say)."""

    def __init__(self, data_dir: Path, *extra: str, **env: str) -> None:
        self.data_dir = data_dir
        CliProcess.__init__(
            self, "serve", "--data-dir", str(data_dir), "--mqtt-port", "0", "--https-port", "0", *extra, env=cli_env(**env)
        )
        self.banner = []


def data(serve: Serve) -> list[str]:
    return ["--data-dir", str(serve.data_dir)]


def client(serve: Serve | None, variant: str, *args: str, timeout: float = 90, env: dict | None = None):
    """Run a variant to its end; the CompletedProcess."""
    return run_cli("client", variant, *(data(serve) if serve else []), *args, timeout=timeout, env=env)


def ok(res) -> str:
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def failed(res, code: int = 1) -> str:
    """The one `error: …` line of a variant that failed as it should: no traceback."""
    assert res.returncode == code, f"exit {res.returncode}, wanted {code}\n{res.stdout}\n{res.stderr}"
    assert no_traceback(res.stderr) and no_traceback(res.stdout), res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, res.stderr
    return errors[0]


def start(serve: Serve, variant: str, *args: str, ready: str = "ready") -> CliProcess:
    """A long-running variant (bridge, translator), once it printed its ready line."""
    proc = CliProcess("client", variant, *data(serve), *args)
    try:
        proc.stdout.until(ready, timeout=60)
    except AssertionError:
        proc.terminate()
        raise AssertionError(f"{variant} did not get ready: {proc.stdout.seen} {proc.stderr.rest(5)}") from None
    return proc


def ready_port(proc: CliProcess) -> int:
    """The local port of a `ready mqtt://127.0.0.1:PORT` (or `… listening on mqtt://…`) line."""
    for line in proc.stdout.seen:
        m = re.search(r"mqtt://127\.0\.0\.1:(\d+)", line)
        if m:
            return int(m.group(1))
    raise AssertionError(f"no local port in {proc.stdout.seen}")


def messages(info: dict, device: str) -> list[dict]:
    """Every stored telemetry message of one device (GET /_emulator/telemetry)."""
    out: list[dict] = []
    after = 0
    while True:
        conn = https_connection(info)
        try:
            query = urllib.parse.urlencode({"deviceId": device, "after": after, "limit": 1000})
            conn.request("GET", f"/_emulator/telemetry?{query}", headers={"Authorization": service_token(info)})
            resp = conn.getresponse()
            page = json.loads(resp.read())
        finally:
            conn.close()
        assert resp.status == 200, page
        out += page["messages"]
        if not page["messages"]:
            return out
        after = page["last"]


def wait_messages(info: dict, device: str, n: int, *, where: dict | None = None, timeout: float = 30) -> list[dict]:
    """The device's messages whose properties include `where`, once there are at least n."""

    def enough() -> list[dict] | None:
        found = [m for m in messages(info, device) if all(m["properties"].get(k) == v for k, v in (where or {}).items())]
        return found if len(found) >= n else None

    return wait_for(enough, timeout, 0.1, what=f"{n} messages from {device} with {where}", seen=lambda: messages(info, device))


def publish_plain(port: int, topic: str, payload: str, qos: int = 1) -> None:
    """A brownfield device: plain MQTT to the local broker, QoS 1, acknowledged."""
    c = mqtt.Client(client_id="", clean_session=True, protocol=mqtt.MQTTv311)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        info = c.publish(topic, payload, qos=qos)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        c.disconnect()
        c.loop_stop()


def subscribe_plain(port: int, topic: str) -> tuple[mqtt.Client, list]:
    got: list = []
    c = mqtt.Client(client_id="", clean_session=True, protocol=mqtt.MQTTv311)
    subscribed: list = []
    c.on_subscribe = lambda *a: subscribed.append(1)
    c.on_message = lambda cl, u, msg: got.append(msg)
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.subscribe(topic, 1)
    wait_for(lambda: subscribed, 10, what=f"SUBACK for {topic} from the local broker")
    return c, got


def own_ca_device(serve: Serve, device_id: str, folder: Path) -> tuple[str, str]:
    """A certificateAuthority device under a root of the test's own, uploaded verified with the
    command line: the device's full-chain file (leaf, intermediate, root) and its key."""
    from azure_iot_harness.certs.convenience import ConvenienceCerts
    from azure_iot_harness.running.service import HUB_API_VERSION, emulator_service

    certs = ConvenienceCerts(folder)
    certs.create_root_and_intermediate()
    root = folder / "certs" / "azure-iot-test-only.root.ca.cert.pem"
    ok(run_cli("ca", "upload", f"root-{device_id}", str(root), "--verified", *data(serve)))
    body = {"deviceId": device_id, "authentication": {"type": "certificateAuthority"}}
    answer = emulator_service(serve.info).call("PUT", f"/devices/{device_id}", body, api=HUB_API_VERSION)
    assert answer.status == 200, answer.raw
    written = certs.create_device_certificate(device_id)
    assert written.full_chain is not None
    return str(written.full_chain), str(written.key)
