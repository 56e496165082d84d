"""Start-up: an in-process Emulator with a fresh PKI until every listener accepts (each in a
fresh interpreter, imports timed apart); `serve` from the command until its "ready" line, with
a new and with an existing data folder; mosquitto from its command until its TLS port accepts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from .context import Context
from .report import Row, Section
from .servers import EmulatorServer, wait_accepts
from .stats import Samples


def run(ctx: Context) -> Section:
    o = ctx.options
    section = Section("Start-up")
    inproc, imports, fresh, existing, mosq = Samples(), Samples(), Samples(), Samples(), Samples()
    root = Path(__file__).parent.parent
    for rep in range(o.startup_repeat):
        out = subprocess.run([sys.executable, "-m", "benchmarks.startup_probe"], capture_output=True, text=True, cwd=root, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"startup probe failed: {out.stderr[-1000:]}")
        probe = json.loads(out.stdout.strip().splitlines()[-1])
        inproc.add(probe["accepting"])
        imports.add(probe["import"])
        server = EmulatorServer(ctx.workdir)
        with server:  # a new data folder: PKI and database created
            fresh.add(server.ready_seconds)
        with server:  # the same folder again
            existing.add(server.ready_seconds)
        if ctx.mosquitto is not None and ctx.wants("mosquitto"):
            m = ctx.mosquitto_server(nodelay=True, devices=1)
            t0 = time.perf_counter()
            with m:
                wait_accepts(m.port)
                mosq.add(time.perf_counter() - t0)
        ctx.log(f"start-up #{rep + 1}: in-process {probe['accepting']:.3f} s (+{probe['import']:.3f} s imports), "
                f"serve {fresh.values[-1]:.2f} s new folder, {existing.values[-1]:.2f} s existing")  # fmt: skip
    a = Row("Start-up, in-process Emulator (fresh PKI) until every listener accepts", "s", inproc, goal="≤ 0.3 s")
    a.met = inproc.median is not None and inproc.median <= 0.3
    b = Row("Start-up, imports before it (not counted above)", "s", imports)
    c = Row("Start-up, `serve` until ready, new data folder", "s", fresh, goal="≤ 1.5 s")
    c.met = fresh.median is not None and fresh.median <= 1.5
    d = Row("Start-up, `serve` until ready, existing data folder", "s", existing, goal="≤ 1.5 s")
    d.met = existing.median is not None and existing.median <= 1.5
    section.rows += [a, b, c, d]
    if mosq.values:
        section.rows.append(Row("Start-up, `serve` until ready, existing data folder", "s", existing, "mosquitto until TLS port accepts", mosq))
    return section
