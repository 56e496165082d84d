"""Resident memory per idle connected device: a fresh server, its devices created, RSS read;
then n TLS clients connect (CONNECT/CONNACK, keep-alive long enough to stay silent) and RSS is
read again. (after − before) / n is the cost of one connected device."""

from __future__ import annotations

import asyncio

from .clients import client_context, close_all, open_connected
from .context import Context
from .identities import identities
from .report import Row, Section
from .servers import EmulatorServer, Server
from .stats import Samples

CONNECT_PARALLEL = 50
KEEPALIVE = 600  # no PINGREQ during the measurement


def run(ctx: Context) -> Section:
    o = ctx.options
    n = o.memory_devices
    section = Section("Memory")
    kinds: list[str] = ["emulator"] if ctx.wants("emulator") else []
    if ctx.mosquitto is not None and ctx.wants("mosquitto"):
        kinds.append("mosquitto")
    elif ctx.mosquitto is None:
        section.not_measured.append("mosquitto comparison (mosquitto not installed)")
    if ctx.wants("amqtt"):
        kinds.append("amqtt")
    per_device: dict[str, Samples] = {}
    labels: dict[str, str] = {}
    for rep in range(o.repeat):
        for kind in kinds:  # a fresh server each time: freed memory is not returned alike
            server: Server
            if kind == "emulator":
                server = ctx.emulator("full")
            elif kind == "mosquitto":
                server = ctx.mosquitto_server(nodelay=True, devices=n)
            else:
                server = ctx.amqtt()
            with server:
                if isinstance(server, EmulatorServer):
                    server.create_devices(identities(n))
                kb = asyncio.run(_measure(server, n, o.settle)) / 1024
            labels[kind] = server.label
            per_device.setdefault(kind, Samples()).add(kb)
            ctx.log(f"memory → {server.label} #{rep + 1}: {kb:.1f} KB per connected device")
    mine = per_device.get("emulator")
    for kind in kinds[1:]:
        row = Row(f"Resident memory per idle connected device ({n} connected)", "KB", mine, labels[kind], per_device[kind])
        section.rows.append(row)
    if mine is not None:
        goal = Row(f"Resident memory per idle connected device ({n} connected)", "KB", mine, goal="≤ 50 KB")
        goal.met = mine.median is not None and mine.median <= 50
        section.rows.insert(0, goal)
    return section


async def _measure(server: Server, n: int, settle: float) -> float:
    ctx = client_context(server.ca_file)
    await asyncio.sleep(settle)
    before = server.rss()
    gate = asyncio.Semaphore(CONNECT_PARALLEL)

    async def one(ident):
        async with gate:
            return await open_connected(ctx, server.port, ident, keepalive=KEEPALIVE)

    results = await asyncio.gather(*(one(i) for i in identities(n)), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    ok = [r for r in results if not isinstance(r, BaseException)]
    try:
        if failed:
            raise RuntimeError(f"{server.label}: {len(failed)} of {n} connects failed: {failed[0]!r}")
        await asyncio.sleep(settle)
        after = server.rss()
    finally:
        await close_all([w for _, w, _ in ok])
    return (after - before) / n
