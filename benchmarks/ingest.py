"""Telemetry ingest: QoS 1 over TLS, fixed-size payloads, from 1 and from n paho publishers and
from mosquitto_pub (timed from its first PUBLISH to its DISCONNECT after the last PUBACK, read
from its debug output). The emulator counts a message when it is acknowledged *and* stored
(PUBACK comes after the commit; the store is counted afterwards); a broker when it is
acknowledged and delivered to one QoS 1 subscriber (mosquitto_sub)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .clients import LOAD_TIMEOUT, MosquittoPub, MosquittoSub, PahoLoad
from .context import Context
from .identities import SUBSCRIBER, identities, identity
from .report import Row, Section
from .servers import EmulatorServer, Server, running
from .stats import Samples

# Seconds a subscriber may still take after the publishers got every PUBACK.
DRAIN_TIMEOUT = 60.0


@dataclass
class Sample:
    rate: float  # messages per second
    cpu_per_1k: float  # server CPU seconds per 1,000 messages


def run(ctx: Context) -> Section:
    o = ctx.options
    section = Section("Telemetry ingest")
    loads = [("paho", 1), ("paho", o.publishers)]
    if ctx.mosquitto is not None:
        loads.append(("mosquitto_pub", 1))
    else:
        section.not_measured.append("mosquitto_pub load and the brokers (mosquitto and mosquitto-clients not installed)")
    servers: list[Server] = []
    if ctx.wants("emulator"):
        servers.append(ctx.emulator("full"))
    if ctx.wants("emulator-normal"):
        servers.append(ctx.emulator("normal"))
    if ctx.mosquitto is not None:  # the brokers' subscriber is mosquitto_sub
        servers += ctx.comparison_servers(o.publishers, default_mosquitto=False)
    lines = ctx.workdir / "payload-lines"
    payload = _payload(o.payload_bytes)
    lines.write_bytes((payload + b"\n") * o.messages)
    results: dict[tuple[str, str], list[Sample]] = {}
    failures: dict[tuple[str, str], str] = {}
    with running(servers, identities(o.publishers)) as started:
        for rep in range(o.repeat):
            for kind, n in loads:
                for server in started:  # interleaved, so a noisy moment hits every server alike
                    name = _load_name(kind, n)
                    try:
                        sample = _one(ctx, server, kind, n, lines, payload)
                    except RuntimeError as exc:
                        ctx.log(f"ingest {name} → {server.label} #{rep + 1}: FAILED: {exc}")
                        failures.setdefault((name, server.label), str(exc))
                        continue
                    ctx.log(f"ingest {name} → {server.label} #{rep + 1}: "
                            f"{sample.rate:,.0f} msg/s, {sample.cpu_per_1k:.3f} CPU s/1k")  # fmt: skip
                    results.setdefault((name, server.label), []).append(sample)
    emulators = [s.label for s in servers if isinstance(s, EmulatorServer)]
    others = [s.label for s in servers if not isinstance(s, EmulatorServer)]
    for kind, n in loads:
        name = _load_name(kind, n)
        for emu in emulators:
            what = f"Ingest, {name}" + ("" if emu == "emulator" else f", {emu[len('emulator ('):-1]}")
            mine = results.get((name, emu), [])
            rate = Samples([s.rate for s in mine])
            cpu = Samples([s.cpu_per_1k for s in mine])
            # The other durability setting is compared with mosquitto only.
            for other in [x for x in others if emu == "emulator" or x.startswith("mosquitto")] or [""]:
                theirs = results.get((name, other), [])
                trate = Samples([s.rate for s in theirs]) if theirs else None
                tcpu = Samples([s.cpu_per_1k for s in theirs]) if theirs else None
                primary = other.startswith("mosquitto") and emu == "emulator"
                rr = Row(what, "msg/s", rate, other, trate)
                cr = Row(what + ", server CPU", "CPU s / 1k msg", cpu, other, tcpu)
                failed = [f"{who}: {failures[(name, who)]}" for who in (emu, other) if (name, who) in failures]
                rr.note = cr.note = "; ".join(f"failed runs, {f}" for f in failed)
                if primary:
                    rr.goal, cr.goal = "≥ 1.0×", "≤ 1.5×"
                    rr.met = rr.ratio is not None and rr.ratio >= 1.0
                    cr.met = cr.ratio is not None and cr.ratio <= 1.5
                section.rows += [rr, cr]
    return section


def _load_name(kind: str, n: int) -> str:
    if kind == "paho":
        return f"{n} paho publisher{'s' if n > 1 else ''}"
    return kind


def _payload(size: int) -> bytes:
    # Printable and newline-free: mosquitto_pub -l sends one message per line.
    return (b'{"t":21.5,"pad":"' + b"x" * size)[: size - 2] + b'"}'


def _one(ctx: Context, server: Server, kind: str, n: int, lines, payload: bytes) -> Sample:
    o = ctx.options
    is_emulator = isinstance(server, EmulatorServer)
    sub = None
    if is_emulator:
        server.clear_telemetry()
    else:
        assert ctx.mosquitto is not None
        sub = MosquittoSub(ctx.mosquitto["mosquitto_sub"], identity(SUBSCRIBER), "devices/+/messages/events/",
                           server.port, server.ca_file, o.messages)  # fmt: skip
    try:
        if sub is not None:
            sub.wait_subscribed()
        error = ""
        if kind == "paho":
            load = PahoLoad(identities(n), server.port, server.ca_file, o.messages, payload)
            try:
                load.connect()
                cpu0 = server.cpu_seconds()
                result = load.run()
                end = time.perf_counter()
                start = end - result.seconds
            finally:
                load.close()
            acked, error = result.acked, result.error
        else:
            assert ctx.mosquitto is not None
            cpu0 = server.cpu_seconds()
            pub = MosquittoPub(ctx.mosquitto["mosquitto_pub"], identity(0), server.port, server.ca_file, lines)
            try:
                start, end = pub.wait(LOAD_TIMEOUT)
                acked = o.messages  # it exits 0 only when every message was acknowledged
            except RuntimeError as exc:
                start = end = 0.0
                acked, error = 0, str(exc)
        if sub is not None:
            delivered = sub.wait(DRAIN_TIMEOUT)
            if delivered is None:
                error = error or f"subscriber got {sub.received} of {o.messages}"
            end = max(end, delivered or end)
        cpu1 = server.cpu_seconds()
    finally:
        if sub is not None:
            sub.close()
    if is_emulator:
        stored = server.stored_telemetry()
        if stored != o.messages:
            error = error or f"{stored} of {o.messages} messages stored"
    if error or acked != o.messages:
        raise RuntimeError(f"{server.label}, {_load_name(kind, n)}: {error or f'{acked} of {o.messages} acknowledged'}")
    return Sample(o.messages / (end - start), (cpu1 - cpu0) / (o.messages / 1000))
