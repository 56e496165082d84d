"""Timers: how long after its cause a connection ends. An MQTT client with keep-alive 1 s that
sends nothing (closed at 1.5 × keep-alive; mosquitto does the same); a device whose SAS token
expires 2 s after it connects (closed at the token's `se`; mosquitto has no counterpart); and an
in-process Emulator stopped with an idle HTTPS keep-alive connection open (hypercorn alone waits
5 s for it). The tests assert that these things happen; how soon is measured here."""

from __future__ import annotations

import http.client
import ssl
import time

from azure_iot_harness.emulator.app import EmulatorThread
from azure_iot_harness.emulator.protocol import sas

from .clients import client_context, connected
from .context import Context
from .identities import HOST, Identity, identity
from .report import Row, Section
from .servers import EmulatorServer, Server, running
from .stats import Samples

KEEP_ALIVE = 1
TOKEN_TTL = 2
WAIT = 30.0  # an upper bound on every wait here: a server that never closes is a failure


def run(ctx: Context) -> Section:
    o = ctx.options
    section = Section("Timers")
    if ctx.mosquitto is None:
        section.not_measured.append("mosquitto keep-alive comparison (mosquitto not installed)")
    ident = identity(0)
    servers: list[Server] = [ctx.emulator("full")] if ctx.wants("emulator") else []
    if ctx.mosquitto is not None and ctx.wants("mosquitto"):
        servers.append(ctx.mosquitto_server(nodelay=True, devices=1))
    keep_alive: dict[str, Samples] = {}
    token, stop = Samples(), Samples()
    with running(servers, [ident]) as started:
        for rep in range(o.repeat):
            for server in started:
                seconds = _idle_close(server, ident)
                keep_alive.setdefault(server.label, Samples()).add(seconds)
                ctx.log(f"timers → {server.label} #{rep + 1}: keep-alive {KEEP_ALIVE} s, closed after {seconds:.2f} s")
                if isinstance(server, EmulatorServer):
                    late = _token_expiry_close(server, ident)
                    token.add(late)
                    ctx.log(f"timers → {server.label} #{rep + 1}: closed {late:.3f} s after the token expired")
            if ctx.wants("emulator"):
                stop.add(_stop_with_idle_https())
                ctx.log(f"timers → in-process emulator #{rep + 1}: stop took {stop.values[-1]:.3f} s")
    emu = "emulator"
    goal = "1.5 × keep-alive (1.3–4 s)"
    rows = [Row(f"Keep-alive {KEEP_ALIVE} s, nothing sent: closed after", "s", keep_alive.get(emu), goal=goal)]
    for other in (s.label for s in servers if s.label != emu):
        rows.append(Row(f"Keep-alive {KEEP_ALIVE} s, nothing sent: closed after", "s", keep_alive.get(emu), other, keep_alive.get(other)))
    rows.append(Row(f"SAS token valid {TOKEN_TTL} s: closed after its expiry by", "s", token, goal="≤ 1 s"))
    rows.append(Row("Stop, in-process Emulator with an idle HTTPS keep-alive connection", "s", stop, goal="≤ 3 s (hypercorn alone: 5 s)"))
    med = keep_alive[emu].median if emu in keep_alive else None
    rows[0].met = med is not None and 1.3 < med < 4
    rows[-2].met = token.median is not None and token.median <= 1
    rows[-1].met = stop.median is not None and stop.median <= 3
    section.rows += rows
    return section


def _until_closed(sock: ssl.SSLSocket, what: str) -> None:
    """Read until the server closes the connection."""
    sock.settimeout(WAIT)
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, ssl.SSLError):
        pass
    except TimeoutError:
        raise RuntimeError(f"{what}: still open after {WAIT:.0f} s") from None
    finally:
        sock.close()


def _idle_close(server: Server, ident: Identity) -> float:
    """Seconds from CONNECT (keep-alive 1 s, nothing sent after it) until the server closes."""
    t0 = time.perf_counter()
    sock = connected(client_context(server.ca_file), server.port, ident.client_id, ident.username, ident.password, KEEP_ALIVE)
    _until_closed(sock, f"{server.label}, keep-alive {KEEP_ALIVE} s")
    return time.perf_counter() - t0


def _token_expiry_close(server: Server, ident: Identity) -> float:
    """Seconds between a SAS token's expiry (`se`, epoch seconds) and the server closing."""
    password = sas.generate(f"{HOST}/devices/{ident.device_id}", ident.key, ttl=TOKEN_TTL)
    se = int(password.rsplit("se=", 1)[1].split("&", 1)[0])
    sock = connected(client_context(server.ca_file), server.port, ident.client_id, ident.username, password)
    _until_closed(sock, f"{server.label}, token valid {TOKEN_TTL} s")
    return time.time() - se


def _stop_with_idle_https() -> float:
    """Seconds an in-process Emulator's stop takes with one idle HTTPS keep-alive connection."""
    thread = EmulatorThread(in_memory=True, mqtt_port=0, https_port=0)
    emu = thread.start()
    conn = http.client.HTTPSConnection("localhost", emu.https_port, context=ssl.create_default_context(cafile=str(emu.ca_file)))
    try:
        conn.request("GET", "/_emulator/health")
        conn.getresponse().read()
        t0 = time.perf_counter()
        thread.stop()
        return time.perf_counter() - t0
    finally:
        conn.close()
