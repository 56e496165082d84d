"""Shared fixtures: a fresh in-memory emulator on ephemeral ports for each test, and the tools
the client variants run (mosquitto, Node-RED), which the conformance suite's full matrix needs too."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from azure_iot_harness.emulator.app import Emulator, EmulatorThread

# A separate project that uses only the installed plugin; tests/conformance runs it on its own.
collect_ignore = ["example_project"]


# Long runs, each with its own command (README, Tests): left out of the default suite
# (deselected, not skipped) unless `-m` names the marker.
LONG_RUNS = ("robustness_long", "certify_long", "conformance_full")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    asked = config.option.markexpr or ""
    left_out = [item for item in items if any(item.get_closest_marker(m) and m not in asked for m in LONG_RUNS)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]


@pytest.fixture
def emulator_thread():
    # uvloop unless AZURE_IOT_HARNESS_EVENT_LOOP says otherwise (tox -e asyncio runs the suite on asyncio's).
    loop = os.environ.get("AZURE_IOT_HARNESS_EVENT_LOOP", "auto")
    thread = EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, event_loop=loop)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture
def emulator(emulator_thread: EmulatorThread) -> Emulator:
    return emulator_thread.emulator


def free_loopback_address() -> str:
    """A random 127.x.y.z: tests that need the standard ports (8883/443, the only ones the Python
    device SDK can use) each get their own address, so parallel workers and runs never collide."""
    import random

    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


@pytest.fixture
def standard_ports_emulator():
    """An emulator on 8883 and 443 of its own loopback address, whose host name is that address."""
    from azure_iot_harness.errors import ConfigError

    last: Exception | None = None
    for _ in range(20):
        address = free_loopback_address()
        thread = EmulatorThread(in_memory=True, bind=address, host=address, mqtt_port=8883, https_port=443)
        try:
            thread.start()
        except ConfigError as exc:  # address taken by a parallel test: draw another
            last = exc
            continue
        try:
            yield thread.emulator
        finally:
            thread.stop()
        return
    raise RuntimeError(f"no free loopback address for the standard ports: {last}")


@pytest.fixture
def served(tmp_path, monkeypatch):
    """`azure-iot-harness serve` as a subprocess on 8883/443 of a random loopback address, with
    SSL_CERT_FILE and REQUESTS_CA_BUNDLE pointing at its CA, as the README tells users to."""
    from tests.cli_helpers import Serve

    for _ in range(5):
        address = free_loopback_address()
        serve = Serve(tmp_path / "data", "--bind", address, "--host", address, "--mqtt-port", "8883", "--https-port", "443")
        try:
            serve.wait_ready()
        except AssertionError:
            serve.terminate()
            if "in use" in serve.stderr.rest():  # its whole stderr: `seen` holds only lines read
                continue
            raise
        info = serve.info
        monkeypatch.setenv("SSL_CERT_FILE", info["caFile"])
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", info["caFile"])
        try:
            yield serve, info
        finally:
            serve.terminate()
        return
    pytest.fail("no free loopback address for 8883/443")


# ---- the tools the client variants run ----------------------------------------------------------

NODE_RED = Path(__file__).resolve().parents[1] / ".cache" / "node-red"


@pytest.fixture(scope="session")
def mosquitto() -> str:
    """Debian's mosquitto and mosquitto-clients, which `bash scripts/install-tools` installs."""
    for tool in ("mosquitto_pub", "mosquitto_sub"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run `bash scripts/install-tools` (or `bash scripts/test`)")
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        pytest.fail("mosquitto is not installed: run `bash scripts/install-tools` (or `bash scripts/test`)")
    return found


@pytest.fixture(scope="session")
def node_red() -> str:
    """The project-local Node-RED; installed here (once, under a lock shared by the xdist
    workers) when `scripts/install-tools` has not done it yet."""
    red = NODE_RED / "node_modules" / "node-red" / "red.js"
    if not red.is_file():
        if shutil.which("npm") is None:
            pytest.fail("npm is needed to install Node-RED: install Node.js 18 or later")
        NODE_RED.parent.mkdir(parents=True, exist_ok=True)
        with open(NODE_RED.parent / "node-red.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not red.is_file():
                done = subprocess.run(
                    ["npm", "install", "--prefix", str(NODE_RED), "--no-audit", "--no-fund", "--loglevel=error", "node-red@4"],
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                assert done.returncode == 0, f"npm install node-red failed: {done.stderr}"
    return str(red)
