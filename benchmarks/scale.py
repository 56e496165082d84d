"""Scale: many devices on one emulator (durability full).

- Idle: n devices connect over TLS with SAS (CONNECT/CONNACK, a keep-alive long enough to stay
  silent) and stay connected; (resident memory after − before) / n is the cost of one idle
  device. The clients are blocking TLS sockets on a few threads (OpenSSL frees their buffers
  while idle), so the benchmark's own process stays small; the file limit is raised by
  `python -m benchmarks` (both processes need a descriptor per connection).
- Steady load: m of those devices publish QoS 1 telemetry at r messages a second each for s
  seconds, their sends spread evenly over each period. Latency is from the PUBLISH written to
  its PUBACK read, on the client; every message must be acknowledged and stored (PUBACK follows
  the commit). The client shares the machine's cores with the server: a late client adds to
  the latency it reports, and the achieved rate shows when the client fell behind.
"""

from __future__ import annotations

import asyncio
import resource
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from azure_iot_harness.emulator.loops import loop_factory

from .clients import DISCONNECT, client_context, close_all, connected, open_connected, publish_packet
from .context import Context
from .identities import Identity, identities
from .report import Row, Section
from .servers import EmulatorServer
from .stats import Samples

IDLE_KEEPALIVE = 1200  # no PINGREQ while idle
CONNECT_THREADS = 8
OPEN_PARALLEL = 50
PAYLOAD = b'{"temperature":21.5,"humidity":40,"seq":0000000}'


def run(ctx: Context) -> Section:
    o = ctx.options
    section = Section("Scale")
    if not ctx.wants("emulator"):
        return section
    n, m, rate, seconds = o.idle_devices, o.rate_devices, o.rate_per_device, o.rate_seconds
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)  # python -m benchmarks raised it to the hard limit
    if soft != resource.RLIM_INFINITY and soft < max(n, m) + 500:
        section.not_measured.append(f"{max(n, m):,} devices: the open-files limit is {soft} (raise the hard limit, ulimit -Hn)")
        return section
    memory, stored_rate, p50, p99, cpu = Samples(), Samples(), Samples(), Samples(), Samples()
    note = ""
    for rep in range(o.scale_repeat):
        with ctx.emulator("full") as emu:
            emu.create_devices_bulk(identities(max(n, m)))
            if n:
                kb = _idle(ctx, emu, identities(n)) / 1024
                memory.add(kb)
                ctx.log(f"scale → {n} idle devices #{rep + 1}: {kb:.1f} KB each")
            if m and rate and seconds:
                emu.clear_telemetry()
                cpu0 = emu.cpu_seconds()
                with asyncio.Runner(loop_factory=loop_factory("auto")) as runner:  # uvloop: a lighter client
                    result = runner.run(_steady(emu, identities(m), rate, seconds))
                used = emu.cpu_seconds() - cpu0
                stored = emu.stored_telemetry()
                if stored != result.sent or result.acked != result.sent:
                    note = f"{result.acked} of {result.sent} acknowledged, {stored} stored"
                lat = sorted(result.latencies)
                stored_rate.add(stored / result.seconds)
                p50.add(lat[len(lat) // 2] * 1000)
                p99.add(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000)
                cpu.add(used / max(stored, 1) * 1000)
                ctx.log(f"scale → {m} devices × {rate:g}/s for {seconds:g} s #{rep + 1}: {stored / result.seconds:,.0f} stored/s, "
                        f"p50 {p50.values[-1]:.1f} ms, p99 {p99.values[-1]:.1f} ms")  # fmt: skip
    if n:
        row = Row(f"Scale, resident memory per idle connected device ({n:,} connected)", "KB", memory, goal="≤ 30 KB")
        row.met = memory.median is not None and memory.median <= 30
        section.rows.append(row)
    if m and rate and seconds:
        what = f"Scale, {m:,} devices × {rate:g} msg/s for {seconds:g} s (QoS 1, every message stored)"
        offered = Row(f"{what}, stored", "msg/s", stored_rate, goal=f"{m * rate:,.0f}/s offered", note=note)
        offered.met = not note and stored_rate.median is not None and stored_rate.median >= 0.99 * m * rate
        section.rows += [
            offered,
            Row(f"{what}, p50 PUBACK latency", "ms", p50),
            Row(f"{what}, p99 PUBACK latency", "ms", p99, goal="reported"),
            Row(f"{what}, server CPU", "CPU ms / msg", cpu),
        ]
    return section


# ---- idle devices ------------------------------------------------------------------------------


def _idle(ctx: Context, emu: EmulatorServer, idents: list[Identity]) -> float:
    """Bytes of resident memory per connected idle device."""
    tls = client_context(emu.ca_file)
    time.sleep(ctx.options.settle)
    before = emu.rss()
    socks: list[ssl.SSLSocket] = []
    lock = threading.Lock()

    def connect(part: list[Identity]) -> None:
        for ident in part:
            sock = connected(tls, emu.port, ident.client_id, ident.username, ident.password, IDLE_KEEPALIVE)
            with lock:
                socks.append(sock)

    try:
        with ThreadPoolExecutor(CONNECT_THREADS) as pool:
            for f in [pool.submit(connect, idents[i::CONNECT_THREADS]) for i in range(CONNECT_THREADS)]:
                f.result()
        time.sleep(ctx.options.settle)
        return (emu.rss() - before) / len(idents)
    finally:
        for sock in socks:
            try:
                sock.sendall(DISCONNECT)
                sock.close()
            except OSError:
                pass


# ---- steady load -------------------------------------------------------------------------------


class _Result:
    def __init__(self) -> None:
        self.sent = 0
        self.acked = 0
        self.latencies: list[float] = []
        self.seconds = 0.0


async def _steady(emu: EmulatorServer, idents: list[Identity], rate: float, seconds: float) -> _Result:
    tls = client_context(emu.ca_file)
    gate = asyncio.Semaphore(OPEN_PARALLEL)

    async def open_one(ident: Identity):
        async with gate:
            return await open_connected(tls, emu.port, ident, keepalive=IDLE_KEEPALIVE)

    conns = await asyncio.gather(*(open_one(i) for i in idents))
    loop = asyncio.get_running_loop()
    result = _Result()
    per_device = int(rate * seconds)
    start = loop.time() + 0.5
    period = 1.0 / rate

    async def device(k: int, ident: Identity, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent_at: dict[int, float] = {}
        all_acked = asyncio.Event()
        sending = True

        async def read_acks() -> None:
            buf = b""
            while True:
                data = await reader.read(4096)
                if not data:
                    return
                buf += data
                now = loop.time()
                usable = len(buf) - len(buf) % 4
                for i in range(0, usable, 4):  # only PUBACKs come back: 0x40 0x02 and the packet id
                    if buf[i] != 0x40:
                        raise RuntimeError(f"{ident.client_id}: unexpected packet {buf[i:i + 4]!r}")
                    t = sent_at.pop(int.from_bytes(buf[i + 2 : i + 4], "big"), None)
                    if t is not None:
                        result.latencies.append(now - t)
                        result.acked += 1
                buf = buf[usable:]
                if not sending and not sent_at:
                    all_acked.set()

        acks = asyncio.create_task(read_acks())
        at = start + period * k / len(idents)  # spread the devices over one period
        for j in range(per_device):
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            pid = j % 65535 + 1
            sent_at[pid] = loop.time()
            writer.write(publish_packet(ident.topic, PAYLOAD, pid))
            result.sent += 1
            at += period
        sending = False
        try:
            if sent_at:
                await asyncio.wait_for(all_acked.wait(), 60)
        except TimeoutError:
            pass  # counted: acked < sent
        finally:
            acks.cancel()

    t0 = loop.time()
    await asyncio.gather(*(device(k, i, r, w) for k, (i, (r, w, _)) in enumerate(zip(idents, conns))))
    result.seconds = loop.time() - max(t0, start)
    await close_all([w for _, w, _ in conns])
    return result

