"""`python -m benchmarks`: run the side-by-side benchmarks, write JSON, print the table."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import psutil

from .context import Context, Options
from .report import Section, render
from .servers import mosquitto_version

SECTIONS = ("telemetry", "eventhub", "connect", "dps", "startup", "timers", "memory", "scale", "suite")
SERVERS = ("emulator", "emulator-normal", "mosquitto", "mosquitto-default", "amqtt")
DEFAULT_OUT = Path(__file__).parent / "results" / "latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections ({', '.join(SECTIONS)})")
    p.add_argument("--skip", default="", help="comma-separated sections to leave out")
    p.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated servers ({', '.join(SERVERS)})")
    p.add_argument("--repeat", type=int, default=3, help="runs of each measurement (medians are reported)")
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--payload-bytes", type=int, default=200)
    p.add_argument("--publishers", type=int, default=10)
    p.add_argument("--connections", type=int, default=500)
    p.add_argument("--memory-devices", type=int, default=1_000)
    p.add_argument("--startup-repeat", type=int, default=5)
    p.add_argument("--connect-repeat", type=int, default=5, help="runs of the connect benchmark (the noisiest)")
    p.add_argument("--suite-repeat", type=int, default=1)
    p.add_argument("--dps-devices", type=int, default=1_000)
    p.add_argument("--dps-concurrency", type=int, default=20, help="registrations in flight in the storm's first form")
    p.add_argument("--idle-devices", type=int, default=10_000, help="scale: devices connected and idle (memory per device)")
    p.add_argument("--rate-devices", type=int, default=1_000, help="scale: devices publishing at --rate-per-device")
    p.add_argument("--rate-per-device", type=float, default=10.0, help="scale: QoS 1 messages a second from each device")
    p.add_argument("--rate-seconds", type=float, default=60.0, help="scale: how long they publish")
    p.add_argument("--scale-repeat", type=int, default=1, help="runs of the scale section (a few minutes each)")
    p.add_argument("--quiet-wait", type=float, default=120, help="seconds to wait for an idle machine before each section")
    p.add_argument("--settle", type=float, default=1.0, help="seconds a server settles before a memory reading")
    p.add_argument("--profile", type=Path, metavar="DIR", help="write a py-spy flame graph of each emulator process to DIR")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    for name, allowed in (("only", SECTIONS), ("skip", SECTIONS), ("servers", SERVERS)):
        bad = [x for x in _split(getattr(args, name)) if x not in allowed]
        if bad:
            p.error(f"--{name}: unknown {', '.join(bad)}")
    return args


def _split(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _wait_for_quiet(limit: float, busy_percent: float = 15.0) -> float | None:
    """Wait (at most `limit` seconds) until the machine is nearly idle before a section starts:
    the cores are shared, and another process's test run skews every number. Returns the last
    reading (percent of all cores busy, measured over 2 s while this process is idle)."""
    if limit <= 0:
        return None
    deadline = time.monotonic() + limit
    while True:
        busy = psutil.cpu_percent(interval=2.0)
        if busy <= busy_percent or time.monotonic() > deadline:
            return busy


def _raise_open_files_limit() -> None:
    # 10,000 connected clients (the scale section) in this process need 10,000 descriptors, the
    # server as many (it inherits the limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _raise_open_files_limit()
    options = Options(
        repeat=args.repeat,
        messages=args.messages,
        payload_bytes=args.payload_bytes,
        publishers=args.publishers,
        connections=args.connections,
        memory_devices=args.memory_devices,
        startup_repeat=args.startup_repeat,
        connect_repeat=args.connect_repeat,
        suite_repeat=args.suite_repeat,
        dps_devices=args.dps_devices,
        dps_concurrency=args.dps_concurrency,
        idle_devices=args.idle_devices,
        rate_devices=args.rate_devices,
        rate_per_device=args.rate_per_device,
        rate_seconds=args.rate_seconds,
        scale_repeat=args.scale_repeat,
        settle=args.settle,
        profile=args.profile.resolve() if args.profile else None,
        servers=tuple(_split(args.servers)),
    )
    chosen = [s for s in _split(args.only) if s not in _split(args.skip)]
    started = time.time()
    load_before = os.getloadavg()
    sections: list[Section] = []
    with tempfile.TemporaryDirectory(prefix="azure-iot-harness-bench-") as tmp:
        ctx = Context(options, Path(tmp))
        if ctx.mosquitto is None:
            print("mosquitto is not installed: its columns are left out (bash benchmarks/run installs it)", file=sys.stderr)
        for name in SECTIONS:
            if name not in chosen:
                continue
            busy = _wait_for_quiet(args.quiet_wait)
            idle = "" if busy is None else f" (machine {busy:.0f}% busy before it)"
            print(f"{name} …{idle}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            module = __import__(f"benchmarks.{'ingest' if name == 'telemetry' else name}", fromlist=["run"])
            sections.append(module.run(ctx))
            sections[-1].busy_before = busy
            print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    table = render(sections)
    doc = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            # Other work on the machine shows here (1, 5, 15 minute load averages).
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "mosquitto": mosquitto_version(),
        },
        "options": vars(options),
        "sections": [{"title": s.title, "rows": [r.to_json() for r in s.rows], "notMeasured": s.not_measured, "machineBusyBefore": s.busy_before} for s in sections],
        "table": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(table)
    print(f"\n{len(sections)} sections in {doc['seconds']:.0f} s; medians of repeats, (min–max) after each; "
          f"ratio = emulator / compared; load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after "
          f"(the {os.cpu_count()} cores are shared). JSON: {args.out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
