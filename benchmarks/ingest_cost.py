"""What one telemetry message (or, with `--storm`, one DPS registration) costs the server,
counted in instructions (callgrind) or sampled as CPU time (py-spy), not timed: timings mean
little on a shared machine. The emulator runs as `serve` in its own process (durability
`full`, on disk, the default event loop), as the benchmarks start it; the load comes from this
process, outside the measurement: one paho publisher (QoS 1, TLS, paho's 20 in flight), or the
dps benchmark's storm client (`--concurrency` registrations in flight, each its own TLS
connection).

    python -m benchmarks.ingest_cost --messages 3000 --tool callgrind
    python -m benchmarks.ingest_cost --messages 30000 --tool py-spy --keep /tmp/ingest.txt
    python -m benchmarks.ingest_cost --storm --messages 300 --tool callgrind
    python -m benchmarks.ingest_cost --messages 5000 --tool strace   # system calls, counted

With callgrind the count is switched on (`callgrind_control -i on`) only once the publisher is
connected and warmed up, and off again after its last PUBACK, so start-up, the handshake and
shutdown are not counted and the total divided by the messages is the cost of one message
(PUBLISH in, the commit, PUBACK out; both threads). Callgrind counts user-space instructions
only: the kernel's share is what `--tool strace` counts. Under valgrind the server is ~50×
slower than the client, so commit groups are fuller than on a real run: counts from two runs of
the same code differ by ~2%. `--src DIR` runs another checkout's `azure_iot_harness` (first on
the server's PYTHONPATH), for A/B counts of two commits with the same client and settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from azure_iot_harness.emulator.protocol import sas

from . import dps as dps_storm
from .clients import Counter, PahoLoad
from .identities import HOST, identity
from .servers import LineWatcher, Rest

START_TIMEOUT = 600.0  # start-up under valgrind makes the development PKI slowly


def _callgrind_control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, stdout=subprocess.DEVNULL)


def _collapsed_summary(path: Path, top: int = 30) -> str:
    """Per thread, the share of its samples in each function (self, and inclusive of what it
    calls), lines folded together, from py-spy's collapsed stacks."""
    threads: dict[str, tuple[dict[str, int], dict[str, int], list[int]]] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        head, *frames = stack.split(";")
        name = head.partition(": ")[2] or head
        own, incl, total = threads.setdefault(name, ({}, {}, [0]))
        total[0] += n
        names = [re.sub(r" \((.*/)?([^/:]+)(:\d+)?\)$", r" (\2)", f) for f in frames] or ["?"]
        own[names[-1]] = own.get(names[-1], 0) + n
        for f in set(names):
            incl[f] = incl.get(f, 0) + n
    out: list[str] = []
    for name, (own, incl, total) in sorted(threads.items(), key=lambda kv: -kv[1][2][0]):
        t = total[0]
        out += ["", f"thread {name}: {t} samples", "  incl%   self%   function"]
        for f, n in sorted(incl.items(), key=lambda kv: -kv[1])[:top]:
            out.append(f"  {100 * n / t:5.1f}  {100 * own.get(f, 0) / t:6.1f}   {f}")
    return "\n".join(out)


def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="ingest-cost-"))
    data = work / "data"
    env = dict(os.environ, AZURE_IOT_HARNESS_DURABILITY=args.durability)
    env.pop("AZURE_IOT_HARNESS_CONFIG", None)
    env.update(kv.split("=", 1) for kv in args.env)
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve())
    prefix: list[str] = []
    out_file = work / "callgrind.out"
    if args.tool == "callgrind":
        prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_file}"]
    cmd = [*prefix, sys.executable, "-m", "azure_iot_harness", "serve", "--data-dir", str(data),
           "--mqtt-port", "0", "--https-port", "0", "--bind", "127.0.0.1", "--host", HOST]  # fmt: skip
    log = open(work / "server.log", "wb")
    # cwd: `python -m` puts it first on sys.path, before PYTHONPATH (--src)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, text=True, cwd=work)
    spy: subprocess.Popen | None = None
    try:
        LineWatcher(proc.stdout, "ready").wait(proc, START_TIMEOUT)
        info = json.loads((data / "endpoints.json").read_text())
        port, https_port, ca_file = info["mqtt"]["port"], info["https"]["port"], Path(info["caFile"])
        owner = next(p for p in info["wellKnownIdentities"]["policies"] if p["name"] == "iothubowner")
        token = sas.generate(f"{HOST}:{https_port}", owner["key"], key_name="iothubowner", ttl=3600)
        if args.storm:
            scope = info["dps"]["idScope"]
            unit = "registration"
            if args.warmup:
                asyncio.run(dps_storm._storm(port, ca_file, scope, [f"warm-{i}" for i in range(min(args.warmup, 100))], args.concurrency))

            def load_run() -> str:
                ids = [f"storm-{i}" for i in range(args.messages)]
                seconds, lat = asyncio.run(dps_storm._storm(port, ca_file, scope, ids, args.concurrency))
                lat.sort()
                return f"p50 {lat[len(lat) // 2] * 1000:.0f} ms, p99 {lat[int(len(lat) * 0.99)] * 1000:.0f} ms, {args.messages / seconds:.0f}/s"

        else:
            unit = "message"
            ident = identity(0)
            status, body = Rest(https_port, ca_file, token).request("PUT", f"/devices/{ident.device_id}?api-version=2021-04-12", ident.registry_doc())
            assert status == 200, (status, body)
            load = PahoLoad([ident], port, ca_file, args.warmup, b"x" * args.payload_bytes)
            load.connect()
            if args.warmup:  # the first messages warm caches and the specialising interpreter
                load.run()
            load.messages, load.acks = args.messages, Counter(args.messages)
            for p in load.publishers:
                p.client.on_publish = lambda c, u, mid: load.acks()

            def load_run() -> str:
                result = load.run()
                load.close()
                assert not result.error and result.acked == args.messages, result
                return f"{args.messages / result.seconds:.0f}/s"

        server = psutil.Process(proc.pid)
        cpu0 = server.cpu_times()
        if args.tool == "callgrind":
            _callgrind_control(proc.pid, "-i", "on")
        elif args.tool == "strace":
            spy = subprocess.Popen(["strace", "-c", "-f", "-o", str(work / "strace.txt"), "-p", str(proc.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            time.sleep(1.0)  # strace attaches
        elif args.tool == "py-spy":
            exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            spy = subprocess.Popen([exe, "record", "--pid", str(proc.pid), "--format", "raw", "--rate", str(args.rate),
                                    "--threads", "--output", str(work / "spy.txt")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            time.sleep(1.0)  # py-spy attaches
        how = load_run()
        if args.tool == "callgrind":
            _callgrind_control(proc.pid, "-i", "off")
        cpu1 = server.cpu_times()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        user, system = cpu1.user - cpu0.user, cpu1.system - cpu0.system
        print(f"{args.messages} {unit}s: {how} (wall clock: noise on a shared machine); server CPU per {unit} "
              f"{1e6 * user / args.messages:.0f} µs user + {1e6 * system / args.messages:.0f} µs system")  # fmt: skip
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(START_TIMEOUT)
        log.close()
    if args.tool == "callgrind":
        events = re.search(r"^totals:\s*(\d+)", out_file.read_text(), re.M)  # summary is 0 with --instr-atstart=no
        assert events is not None
        total = int(events.group(1))
        unit = "registration" if args.storm else "message"
        print(f"instructions: {total:,} for {args.messages} {unit}s: {total / args.messages:,.0f} per {unit}")
        if args.keep:
            shutil.copy(out_file, args.keep)
    elif args.tool == "strace":
        print((work / "strace.txt").read_text())
    elif args.tool == "strace":
        print((work / "strace.txt").read_text())
    elif args.tool == "py-spy":
        summary = _collapsed_summary(work / "spy.txt")
        print(summary)
        if args.keep:
            shutil.copy(work / "spy.txt", args.keep)
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages (with --storm: registrations)")
    parser.add_argument("--storm", action="store_true", help="a provisioning storm instead (the dps benchmark's client)")
    parser.add_argument("--concurrency", type=int, default=20, help="registrations in flight (--storm)")
    parser.add_argument("--warmup", type=int, default=200, help="messages sent before counting starts")
    parser.add_argument("--payload-bytes", type=int, default=200)
    parser.add_argument("--durability", default="full")
    parser.add_argument("--tool", choices=["callgrind", "py-spy", "strace", "none"], default="callgrind")
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples a second")
    parser.add_argument("--src", help="a checkout whose azure_iot_harness the server runs (default: this one)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a setting for the server (AZURE_IOT_HARNESS_TRACE=false)")
    parser.add_argument("--keep", type=Path, help="copy callgrind's output or py-spy's collapsed stacks here")
    main_args = parser.parse_args()
    run(main_args)


if __name__ == "__main__":
    main()
