"""Provisioning storm: devices of the well-known symmetric-key enrollment group register over
MQTT/TLS, each with its own connection (TLS, CONNECT with its derived key's SAS token,
SUBSCRIBE, register, poll until "assigned", DISCONNECT). Latency is from the TCP connect to the
"assigned" answer. The client polls as soon as the 202 arrives instead of waiting the
configured retry-after (3 s by default): the emulator counts answers, not time, before it
says "assigned", so the latency excludes those waits by construction. There is nothing to
compare with (mosquitto has no DPS); the goals are absolute."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
import urllib.parse

from azure_iot_harness.config import WELL_KNOWN_SYMMETRIC_GROUP_KEYS
from azure_iot_harness.emulator.protocol import sas

from .clients import (
    DISCONNECT,
    client_context,
    connect_bytes,
    decode_publish,
    puback_packet,
    publish_packet,
    read_packet,
    subscribe_packet,
)
from .context import Context
from .identities import HOST
from .report import Row, Section
from .stats import Samples

API = "api-version=2019-03-31"
RES = "$dps/registrations/res/#"
REGISTER = "$dps/registrations/PUT/iotdps-register/?$rid={}"
POLL = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={}&operationId={}"
MAX_POLLS = 20
TIMEOUT = 60.0


def run(ctx: Context) -> Section:
    o = ctx.options
    section = Section("Provisioning storm")
    if importlib.util.find_spec("azure_iot_harness.emulator.dps") is None:
        section.not_measured.append("DPS not built")
        return section
    if not ctx.wants("emulator"):
        return section
    n = o.dps_devices
    modes = [(f"{n} devices, {o.dps_concurrency} at a time", o.dps_concurrency), (f"{n} devices at once", n)]
    rate: dict[str, Samples] = {}
    p50: dict[str, Samples] = {}
    p99: dict[str, Samples] = {}
    cpu: dict[str, Samples] = {}
    with ctx.emulator("full") as emu:
        scope = emu.info["dps"]["idScope"]
        for rep in range(o.repeat):
            for m, (label, concurrency) in enumerate(modes):
                ids = [f"storm{rep}-{m}-{i}" for i in range(n)]
                cpu0 = emu.cpu_seconds()
                seconds, lat = asyncio.run(_storm(emu.port, emu.ca_file, scope, ids, concurrency))
                used = emu.cpu_seconds() - cpu0
                lat.sort()
                rate.setdefault(label, Samples()).add(n / seconds)
                p50.setdefault(label, Samples()).add(lat[len(lat) // 2] * 1000)
                p99.setdefault(label, Samples()).add(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000)
                cpu.setdefault(label, Samples()).add(used / n * 1000)
                ctx.log(f"dps storm {label} #{rep + 1}: {n / seconds:.0f} registrations/s, "
                        f"p50 {p50[label].values[-1]:.0f} ms, p99 {p99[label].values[-1]:.0f} ms")  # fmt: skip
    for i, (label, _) in enumerate(modes):
        r = Row(f"Provisioning storm, {label}", "registrations/s", rate[label])
        a = Row(f"Provisioning storm, {label}, p50 latency", "ms", p50[label])
        b = Row(f"Provisioning storm, {label}, p99 latency", "ms", p99[label])
        c = Row(f"Provisioning storm, {label}, server CPU", "CPU ms / registration", cpu[label])
        if i == 0:
            r.goal, b.goal = "≥ 1,000/s", "≤ 50 ms"
            r.met = (rate[label].median or 0) >= 1000
            b.met = p99[label].median is not None and p99[label].median <= 50
        section.rows += [r, a, b, c]
    return section


async def _storm(port: int, ca_file, scope: str, ids: list[str], concurrency: int) -> tuple[float, list[float]]:
    ssl_ctx = client_context(ca_file)
    gate = asyncio.Semaphore(concurrency)

    async def one(rid: str) -> float:
        async with gate:
            return await asyncio.wait_for(_register(ssl_ctx, port, scope, rid), TIMEOUT)

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(r) for r in ids), return_exceptions=True)
    seconds = time.perf_counter() - t0
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(ids)} registrations failed: {failed[0]!r}")
    return seconds, [r for r in results if not isinstance(r, BaseException)]


async def _register(ssl_ctx, port: int, scope: str, rid: str) -> float:
    key = sas.derive_device_key(WELL_KNOWN_SYMMETRIC_GROUP_KEYS[0], rid)
    token = sas.generate(f"{scope}/registrations/{rid}", key, key_name="registration", ttl=3600)
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl_ctx, server_hostname=HOST)
    try:
        writer.write(connect_bytes(rid, f"{scope}/registrations/{rid}/{API}", token))
        kind, _, connack = await read_packet(reader)
        if kind != 2 or connack[1] != 0:
            raise RuntimeError(f"{rid}: CONNACK {connack!r}")
        writer.write(subscribe_packet(RES))
        kind, _, _ = await read_packet(reader)
        if kind != 9:
            raise RuntimeError(f"{rid}: expected SUBACK, got packet type {kind}")
        writer.write(publish_packet(REGISTER.format(1), json.dumps({"registrationId": rid}).encode(), 1))
        for request in range(2, MAX_POLLS + 2):
            status, answer = await _answer(reader, writer)
            if status == 200 and answer.get("status") == "assigned":
                writer.write(DISCONNECT)
                return time.perf_counter() - t0
            if status != 202:
                raise RuntimeError(f"{rid}: {status} {answer}")
            writer.write(publish_packet(POLL.format(request, answer["operationId"]), b"", 1))
        raise RuntimeError(f"{rid}: not assigned after {MAX_POLLS} polls")
    finally:
        writer.close()


async def _answer(reader, writer) -> tuple[int, dict]:
    """The next answer on res/{status}, acknowledging it; PUBACKs of our requests skipped."""
    while True:
        kind, flags, body = await read_packet(reader)
        if kind == 4:
            continue
        if kind != 3:
            raise RuntimeError(f"unexpected packet type {kind}")
        topic, pid, payload = decode_publish(flags, body)
        if pid is not None:
            writer.write(puback_packet(pid))
        status = int(urllib.parse.urlsplit(topic).path.split("/")[3])
        return status, json.loads(payload) if payload else {}
