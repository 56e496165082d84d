"""Emulators for the client variants (one `serve` per test module and xdist worker, each with its
own data folder) and the tools they run: mosquitto, Node-RED."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.clients.helpers import ServeWith

ROOT = Path(__file__).resolve().parents[2]
NODE_RED = ROOT / ".cache" / "node-red"


def _serve(tmp_path_factory: pytest.TempPathFactory, *extra: str):
    # DPS answers "assigning" once, with retry-after 1 s: the variants poll, and quickly.
    serve = ServeWith(tmp_path_factory.mktemp("clients"), *extra, AZURE_IOT_HARNESS_DPS_RETRY_AFTER="1")
    with serve:
        yield serve


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    """`serve` on ephemeral ports."""
    yield from _serve(tmp_path_factory)


@pytest.fixture(scope="module")
def edge_hub(tmp_path_factory: pytest.TempPathFactory):
    """`serve --edge`: the edgeHub on an ephemeral port of 127.0.0.2."""
    yield from _serve(tmp_path_factory, "--edge", "--edge-mqtt-port", "0")


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
