"""The servers under test, each in its own process so its CPU time and memory are its own.

- `EmulatorServer`: `python -m azure_iot_harness serve` on ephemeral ports, found through the
  endpoints file it writes.
- `MosquittoServer`: Debian's mosquitto with TLS, a password file holding the same SAS tokens
  the emulator checks, with or without `set_tcp_nodelay true`.
- `AmqttServer`: a bare amqtt `Broker` (anonymous login, no other plugin).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import psutil

from azure_iot_harness.certs import DevPKI
from azure_iot_harness.emulator.protocol import sas

from .identities import HOST, SUBSCRIBER, Identity, identity

START_TIMEOUT = 60.0


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    """A port the kernel just handed out (for servers that cannot be told to pick one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_accepts(port: int, timeout: float = START_TIMEOUT, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise ServerError(f"server exited with {proc.returncode} before accepting on {port}") from None
            if time.monotonic() > deadline:
                raise ServerError(f"nothing accepts on port {port} after {timeout} s") from None
            time.sleep(0.005)


class LineWatcher:
    """Drains a process's stdout on a thread and notes when a line with a prefix appears."""

    def __init__(self, stream, prefix: str) -> None:
        self.prefix = prefix
        self.seen = threading.Event()
        self.seen_at: float | None = None
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream) -> None:
        for line in stream:
            if not self.seen.is_set() and line.startswith(self.prefix):
                self.seen_at = time.perf_counter()
                self.seen.set()
            if len(self.lines) < 200:
                self.lines.append(line)

    def wait(self, proc: subprocess.Popen, timeout: float = START_TIMEOUT) -> float:
        deadline = time.monotonic() + timeout
        while not self.seen.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ServerError(f"no {self.prefix!r} line (exit {proc.poll()}): {''.join(self.lines)[-2000:]}")
        assert self.seen_at is not None
        return self.seen_at


class Server:
    label = "server"
    proc: subprocess.Popen | None = None
    port: int = 0
    ca_file: Path

    def start(self) -> Server:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        t = psutil.Process(self.pid).cpu_times()
        return t.user + t.system

    def rss(self) -> int:
        return psutil.Process(self.pid).memory_info().rss

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- the emulator ------------------------------------------------------------------------------


class EmulatorServer(Server):
    _count = 0

    def __init__(self, workdir: Path, *, durability: str = "full", profile_dir: Path | None = None) -> None:
        self.workdir = workdir
        self.durability = durability
        self.profile_dir = profile_dir
        self.spy: subprocess.Popen | None = None
        self.label = "emulator" if durability == "full" else f"emulator ({durability} durability)"
        EmulatorServer._count += 1  # a fresh data folder for every server started
        self.data_dir = workdir / f"emulator-{durability}-{EmulatorServer._count}"
        self.info: dict = {}
        self.ready_seconds = 0.0

    def start(self) -> EmulatorServer:
        env = dict(os.environ, AZURE_IOT_HARNESS_DURABILITY=self.durability)
        env.pop("AZURE_IOT_HARNESS_CONFIG", None)
        log = open(self.data_dir.with_suffix(".log"), "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "azure_iot_harness", "serve", "--data-dir", str(self.data_dir),
             "--mqtt-port", "0", "--https-port", "0", "--bind", "127.0.0.1", "--host", HOST],
            stdout=subprocess.PIPE, stderr=log, env=env, text=True,
        )  # fmt: skip
        log.close()
        ready_at = LineWatcher(self.proc.stdout, "ready").wait(self.proc)
        self.ready_seconds = ready_at - t0
        self.info = json.loads((self.data_dir / "endpoints.json").read_text())
        self.port = self.info["mqtt"]["port"]
        self.https_port = self.info["https"]["port"]
        self.ca_file = Path(self.info["caFile"])
        owner = next(p for p in self.info["wellKnownIdentities"]["policies"] if p["name"] == "iothubowner")
        self.service_token = sas.generate(f"{HOST}:{self.https_port}", owner["key"], key_name="iothubowner", ttl=24 * 3600)
        if self.profile_dir is not None:
            self._start_profiler()
        return self

    def _start_profiler(self) -> None:
        """py-spy samples the whole life of the server (all threads) into a flame graph."""
        assert self.profile_dir is not None
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.profile_dir / f"{self.data_dir.name}.svg"
        self.spy = subprocess.Popen([spy, "record", "--pid", str(self.pid), "--output", str(out), "--rate", "250",
                                     "--threads", "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    def stop(self) -> None:
        if self.spy is not None:
            self.spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self.spy.wait(60)
            except subprocess.TimeoutExpired:
                self.spy.kill()
            self.spy = None
        super().stop()

    def rest(self) -> Rest:
        return Rest(self.https_port, self.ca_file, self.service_token)

    def create_devices(self, idents: Iterable[Identity], parallel: int = 4) -> None:
        """PUT each identity through the registry REST API (the emulator creates nothing itself)."""
        todo = list(idents)
        errors: list[str] = []

        def work(part: list[Identity]) -> None:
            rest = self.rest()
            for ident in part:
                status, body = rest.request("PUT", f"/devices/{ident.device_id}?api-version=2021-04-12", ident.registry_doc())
                if status != 200:
                    errors.append(f"{ident.device_id}: {status} {body}")
            rest.close()

        threads = [threading.Thread(target=work, args=(todo[i::parallel],)) for i in range(parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise ServerError(f"creating devices failed: {errors[:3]}")

    def create_devices_bulk(self, idents: Iterable[Identity]) -> None:
        """Create many identities, 100 a request (the registry's bulk API), for the scale rows."""
        rest = self.rest()
        try:
            create_bulk(rest, idents)
        finally:
            rest.close()

    def clear_telemetry(self) -> None:
        status, body = self.rest().request("DELETE", "/_emulator/telemetry")
        if status != 204:
            raise ServerError(f"DELETE /_emulator/telemetry: {status} {body}")

    def stored_telemetry(self) -> int:
        """How many messages the store holds, counted by paging through `/_emulator/telemetry`."""
        rest, after, count = self.rest(), 0, 0
        while True:
            status, body = rest.request("GET", f"/_emulator/telemetry?after={after}&limit=1000")
            if status != 200:
                raise ServerError(f"GET /_emulator/telemetry: {status} {body}")
            count += len(body["messages"])
            if not body["messages"]:
                rest.close()
                return count
            after = body["last"]


def create_bulk(rest: Rest, idents: Iterable[Identity]) -> None:
    """Create identities through the registry's bulk API, 100 a request."""
    todo = list(idents)
    for i in range(0, len(todo), 100):
        entries = [{"id": d.device_id, "importMode": "createOrUpdate", **d.registry_doc()} for d in todo[i : i + 100]]
        status, body = rest.request("POST", "/devices?api-version=2021-04-12", entries)
        if status != 200 or not (isinstance(body, dict) and body.get("isSuccessful")):
            raise ServerError(f"bulk create failed: {status} {str(body)[:500]}")


class Rest:
    """A keep-alive HTTPS connection to the emulator's service API."""

    def __init__(self, port: int, ca_file: Path, token: str) -> None:
        self.port, self.token = port, token
        self.ctx = ssl.create_default_context(cafile=str(ca_file))
        self.conn: http.client.HTTPSConnection | None = None

    def request(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(HOST, self.port, context=self.ctx, timeout=60)
            headers = {"Authorization": self.token}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            try:
                self.conn.request(method, path, data, headers)
                resp = self.conn.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
                continue
            return resp.status, json.loads(raw) if raw else None
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@contextlib.contextmanager
def running(servers: list[Server], idents: list[Identity]) -> Iterator[list[Server]]:
    """Start each server (with `idents` created in the emulator's registry); stop them all after."""
    started: list[Server] = []
    try:
        for server in servers:
            server.start()
            started.append(server)
            if isinstance(server, EmulatorServer):
                server.create_devices(idents)
        yield started
    finally:
        for server in started:
            server.stop()


# ---- the brokers -------------------------------------------------------------------------------


class TlsFiles:
    """A development CA and a server certificate for `localhost`, as files the brokers read."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        pki = DevPKI.generate([HOST])
        self.ca_file = pki.write_ca(folder)
        self.cert_file = folder / "server.pem"
        self.key_file = folder / "server.key"
        self.cert_file.write_bytes(pki.server_chain_pem)
        self.key_file.write_bytes(pki.server_key_pem)
        os.chmod(self.key_file, 0o600)


def mosquitto_binaries() -> dict[str, str] | None:
    found = {name: shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
             for name in ("mosquitto", "mosquitto_pub", "mosquitto_sub", "mosquitto_passwd")}  # fmt: skip
    if not all(found.values()):
        return None
    return found  # type: ignore[return-value]


def mosquitto_version() -> str | None:
    bins = mosquitto_binaries()
    if bins is None:
        return None
    out = subprocess.run([bins["mosquitto"], "-h"], capture_output=True, text=True).stdout
    first = out.splitlines()[0] if out else ""
    return first.rsplit(" ", 1)[-1] if "version" in first else first


class MosquittoServer(Server):
    def __init__(self, workdir: Path, tls: TlsFiles, *, nodelay: bool, devices: int) -> None:
        self.workdir, self.tls, self.nodelay, self.devices = workdir, tls, nodelay, devices
        self.label = "mosquitto (nodelay)" if nodelay else "mosquitto (default)"
        self.ca_file = tls.ca_file
        bins = mosquitto_binaries()
        if bins is None:
            raise ServerError("mosquitto is not installed (bash benchmarks/run installs it)")
        self.bins = bins

    def start(self) -> MosquittoServer:
        tag = "nodelay" if self.nodelay else "default"
        pwfile = self.workdir / f"mosquitto-{tag}.passwd"
        idents = [identity(i) for i in range(self.devices)] + [identity(SUBSCRIBER)]
        pwfile.write_text("".join(f"{i.username}:{i.password}\n" for i in idents))
        subprocess.run([self.bins["mosquitto_passwd"], "-U", str(pwfile)], check=True, capture_output=True)
        for attempt in range(5):
            self.port = free_port()
            conf = self.workdir / f"mosquitto-{tag}.conf"
            lines = [
                f"listener {self.port} 127.0.0.1",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
                "tls_version tlsv1.2",  # the emulator speaks TLS 1.2 only, like IoT Hub
                "allow_anonymous false",
                f"password_file {pwfile}",
                "persistence false",
                # Deliver every message to the one subscriber instead of dropping past 1,000 queued.
                "max_queued_messages 0",
                f"log_dest file {self.workdir / f'mosquitto-{tag}.log'}",
            ]
            if self.nodelay:
                lines.append("set_tcp_nodelay true")
            if os.geteuid() == 0:
                lines.append("user root")  # else mosquitto drops to 'mosquitto' and cannot read the key
            conf.write_text("\n".join(lines) + "\n")
            self.proc = subprocess.Popen([self.bins["mosquitto"], "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                wait_accepts(self.port, proc=self.proc)
                return self
            except ServerError:
                self.stop()
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                if "in use" not in err or attempt == 4:
                    raise ServerError(f"mosquitto did not start: {err}") from None
        raise AssertionError("unreachable")


class AmqttServer(Server):
    label = "amqtt Broker"

    def __init__(self, workdir: Path, tls: TlsFiles) -> None:
        self.workdir, self.tls = workdir, tls
        self.ca_file = tls.ca_file

    def start(self) -> AmqttServer:
        for attempt in range(5):
            self.port = free_port()
            log = open(self.workdir / "amqtt.log", "ab")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.amqtt_broker", "--port", str(self.port),
                 "--cert", str(self.tls.cert_file), "--key", str(self.tls.key_file)],
                stdout=subprocess.PIPE, stderr=log, text=True, cwd=Path(__file__).parent.parent,
            )  # fmt: skip
            log.close()
            try:
                LineWatcher(self.proc.stdout, "ready").wait(self.proc)
                return self
            except ServerError:
                self.stop()
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")
