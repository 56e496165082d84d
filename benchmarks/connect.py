"""TLS connect + SAS authenticate: n sequential connections (handshake, CONNECT, CONNACK 0,
DISCONNECT, one after another) and n concurrent ones (all at once, kept until every CONNACK
arrived). mosquitto checks the same tokens against its password file."""

from __future__ import annotations

import asyncio
import time

from .clients import client_context, close_all, connect_once, open_connected
from .context import Context
from .identities import identities
from .report import Row, Section
from .servers import Server, running
from .stats import Samples

SLOW_SEQUENTIAL = 100



def run(ctx: Context) -> Section:
    o = ctx.options
    section = Section("Connect")
    if ctx.mosquitto is None:
        section.not_measured.append("mosquitto comparison (mosquitto not installed)")
    servers: list[Server] = [ctx.emulator("full")] if ctx.wants("emulator") else []
    servers += ctx.comparison_servers(o.connections, default_mosquitto=True)
    idents = identities(o.connections)
    seq: dict[str, Samples] = {}
    conc: dict[str, Samples] = {}
    p99: dict[str, Samples] = {}
    cpu: dict[str, Samples] = {}
    with running(servers, idents) as started:
        for rep in range(o.connect_repeat):
            for server in started:
                c = client_context(server.ca_file)
                # Default mosquitto stalls 40 ms per connect (Nagle): its rate shows in fewer.
                some = idents[:SLOW_SEQUENTIAL] if server.label == "mosquitto (default)" else idents
                cpu0, t0 = server.cpu_seconds(), time.perf_counter()
                for ident in some:
                    connect_once(c, server.port, ident)
                seconds, cpu1 = time.perf_counter() - t0, server.cpu_seconds()
                seq.setdefault(server.label, Samples()).add(len(some) / seconds)
                cpu.setdefault(server.label, Samples()).add((cpu1 - cpu0) / len(some) * 1000)
                time.sleep(o.settle / 2)  # the server finishes closing the round's connections
                rate, lat99 = asyncio.run(_concurrent(server, idents))
                conc.setdefault(server.label, Samples()).add(rate)
                p99.setdefault(server.label, Samples()).add(lat99 * 1000)
                time.sleep(o.settle / 2)  # the server finishes closing the round's connections
                ctx.log(f"connect → {server.label} #{rep + 1}: sequential {seq[server.label].values[-1]:.0f}/s, "
                        f"concurrent {rate:.0f}/s (p99 {lat99 * 1000:.0f} ms)")  # fmt: skip
    emu = "emulator"
    others = [s.label for s in servers if s.label != emu]
    n = o.connections
    for other in others:
        primary = other == "mosquitto (nodelay)"
        few = f"theirs from {min(n, SLOW_SEQUENTIAL)}" if other == "mosquitto (default)" else ""
        rows = [
            Row(f"TLS connect + SAS, {n} sequential", "connects/s", seq.get(emu), other, seq.get(other), note=few),
            Row(f"TLS connect + SAS, {n} concurrent", "connects/s", conc.get(emu), other, conc.get(other)),
        ]
        for r in rows:
            if primary:
                r.goal = "≥ 1.0×"
                r.met = r.ratio is not None and r.ratio >= 1.0
        rows.append(Row(f"TLS connect + SAS, {n} concurrent, p99 latency", "ms", p99.get(emu), other, p99.get(other)))
        cpu_row = Row(f"TLS connect + SAS, {n} sequential, server CPU", "CPU ms / connect", cpu.get(emu), other, cpu.get(other))
        if primary:
            cpu_row.goal = "≤ 1.5×"
            cpu_row.met = cpu_row.ratio is not None and cpu_row.ratio <= 1.5
        rows.append(cpu_row)
        section.rows += rows
    return section


async def _concurrent(server: Server, idents) -> tuple[float, float]:
    c = client_context(server.ca_file)
    t0 = time.perf_counter()
    results = await asyncio.gather(*(open_connected(c, server.port, i) for i in idents), return_exceptions=True)
    seconds = time.perf_counter() - t0
    ok = [r for r in results if not isinstance(r, BaseException)]
    await close_all([w for _, w, _ in ok])
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise RuntimeError(f"{server.label}: {len(failed)} of {len(idents)} concurrent connects failed: {failed[0]!r}")
    lat = sorted(t for _, _, t in ok)
    return len(idents) / seconds, lat[min(len(lat) - 1, int(len(lat) * 0.99))]
