"""The unmodified Azure IoT Node.js SDKs (npm, pinned by package-lock.json) against the emulator.

Each `*.js` here is a small program of the project's own that exits 0 when every call behaved as
on Azure. The SDKs' REST clients only use port 443, so each test gets an emulator on 8883/443 of
its own loopback address. `scripts/install-tools` installs the SDKs into `.cache/node-sdks`;
this module does it itself when they are missing, and skips only when Node.js is not installed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SDKS = ROOT / ".cache" / "node-sdks"


@pytest.fixture(scope="session")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.skip("Node.js is not installed (the Node.js SDK tests need `node`; scripts/install-tools needs npm)")
    SDKS.parent.mkdir(parents=True, exist_ok=True)
    with open(SDKS.parent / "node-sdks.lock", "w") as lock:  # one install for all xdist workers
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(["bash", str(ROOT / "scripts" / "install-node-sdks")], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"scripts/install-node-sdks failed:\n{done.stdout}{done.stderr}")
    return found


def run_script(node: str, name: str, emu, **settings: str) -> str:
    env = {
        **os.environ,
        "NODE_PATH": str(SDKS / "node_modules"),
        "NODE_EXTRA_CA_CERTS": str(emu.ca_file),
        "IOTHUB_CONNECTION_STRING": emu.connection_string(policy="iothubowner"),
        **settings,
    }
    done = subprocess.run([node, str(HERE / name)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), f"{name} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def test_twin_clear_reaches_the_device(node, standard_ports_emulator):
    emu = standard_ports_emulator
    run_script(node, "twin_clear.js", emu, DEVICE_ID="device1", DEVICE_CONNECTION_STRING=emu.connection_string(device="device1"))
    assert emu.hub.twins.get(("device1", None))["desired"] == {}


def test_registry_list(node, standard_ports_emulator):
    run_script(node, "registry_list.js", standard_ports_emulator, DEVICE_ID="device1")


def test_bulk_add_update_remove(node, standard_ports_emulator):
    run_script(node, "bulk.js", standard_ports_emulator)
    assert standard_ports_emulator.registry.get("node-bulk-1") is None


def test_edge_device_scope(node, standard_ports_emulator):
    run_script(node, "edge_scope.js", standard_ports_emulator)
    assert standard_ports_emulator.registry.get("node-leaf")["parentScopes"] == [
        standard_ports_emulator.registry.get("node-edge")["deviceScope"]
    ]


def test_dps_group_with_a_base64_pem_signing_certificate(node, standard_ports_emulator, tmp_path):
    emu = standard_ports_emulator
    ca = tmp_path / "device-ca.pem"
    ca.write_bytes(emu.pki.device_ca_pem)
    run_script(node, "dps_group_base64.js", emu, DPS_CONNECTION_STRING=emu.dps_connection_string(), SIGNING_CERTIFICATE_FILE=str(ca))
