"""Where an idle connected device's memory goes in the server: the Python heap by the line that
allocated it (tracemalloc), next to the resident memory it adds in all. The emulator runs in this
process (tracemalloc must see it; resident memory is inflated by tracemalloc's own records, so
the memory benchmark's figure is the one to quote), durability `full` on disk; the devices are
blocking TLS sockets in a child process, each connected with SAS and then idle.

    python -m benchmarks.memory_cost --devices 2000 --top 40
"""

from __future__ import annotations

import argparse
import gc
import linecache
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from azure_iot_harness.emulator.app import EmulatorThread

from .clients import client_context, connected
from .identities import HOST, identities
from .servers import Rest, create_bulk

IDLE_KEEPALIVE = 1200
CONNECT_THREADS = 8


def _raise_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _devices(port: int, ca_file: Path, n: int) -> None:
    """The child: connect n devices, say so on stdout, stay connected until stdin closes (the
    parent is done, or gone)."""
    _raise_file_limit()
    tls, socks, lock = client_context(ca_file), [], threading.Lock()

    def connect(part: list) -> None:
        for ident in part:
            sock = connected(tls, port, ident.client_id, ident.username, ident.password, IDLE_KEEPALIVE)
            with lock:
                socks.append(sock)

    idents = identities(n)
    with ThreadPoolExecutor(CONNECT_THREADS) as pool:
        for f in [pool.submit(connect, idents[i::CONNECT_THREADS]) for i in range(CONNECT_THREADS)]:
            f.result()
    print(len(socks), flush=True)
    sys.stdin.read()


def _wait_for(condition: Callable[[], bool], *, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.05)


def _short(filename: str) -> str:
    for marker in ("azure_iot_harness/", "site-packages/", "python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def run(n: int, top: int) -> None:
    _raise_file_limit()
    folder = tempfile.mkdtemp(prefix="memory-cost-")
    thread = EmulatorThread(data_dir=folder, host=HOST, mqtt_port=0, https_port=0, amqp_port=0, durability="full")
    emu = thread.start()
    child = None
    try:
        rest = Rest(emu.https_port, emu.ca_file, emu.service_token())
        try:
            create_bulk(rest, identities(n))
        finally:
            rest.close()
        gc.collect()
        process = psutil.Process()
        tracemalloc.start(1)
        before, rss0 = tracemalloc.take_snapshot(), process.memory_info().rss
        child = subprocess.Popen([sys.executable, "-m", "benchmarks.memory_cost", "--connect", str(emu.mqtt_port), str(emu.ca_file), str(n)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert child.stdout is not None
        if child.stdout.readline().strip() != str(n):
            raise SystemExit("the devices did not all connect")
        _wait_for(lambda: len(emu.hub.sessions) >= n, what=f"{n} sessions at the hub")
        gc.collect()
        after, rss1 = tracemalloc.take_snapshot(), process.memory_info().rss
        stats = after.compare_to(before, "lineno")
        heap = sum(s.size_diff for s in stats)
        print(f"{n} idle devices: resident memory +{(rss1 - rss0) / n / 1024:.1f} KB each (tracemalloc's records included), "
              f"Python heap +{heap / n / 1024:.2f} KB each")  # fmt: skip
        print(f"{'bytes':>8} {'objects':>7}  where")
        for s in stats[:top]:
            frame = s.traceback[0]
            line = linecache.getline(frame.filename, frame.lineno).strip()[:70]
            print(f"{s.size_diff / n:8.0f} {s.count_diff / n:7.2f}  {_short(frame.filename)}:{frame.lineno}  {line}")
    finally:
        if child is not None:
            assert child.stdin is not None
            child.stdin.close()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        thread.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--top", type=int, default=40, help="lines of the breakdown")
    parser.add_argument("--connect", nargs=3, metavar=("PORT", "CA_FILE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.connect:
        _devices(int(args.connect[0]), Path(args.connect[1]), int(args.connect[2]))
    else:
        run(args.devices, args.top)


if __name__ == "__main__":
    main()
