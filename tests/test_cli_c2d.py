"""`azure-iot-harness c2d send` against a running `serve`, and the Python API twin of it."""

from __future__ import annotations

import json
import ssl
import urllib.request

from azure_iot_harness.config import WELL_KNOWN_POLICIES
from azure_iot_harness.emulator.protocol import sas
from tests.cli_helpers import Serve, run_cli


def _pending(info):
    host = f"{info['https']['host']}:{info['https']['port']}"
    token = sas.generate(host, WELL_KNOWN_POLICIES[0].key, key_name="iothubowner")
    req = urllib.request.Request(f"https://localhost:{info['https']['port']}/_emulator/c2d/device1", headers={"Authorization": token})
    with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=info["caFile"])) as resp:
        return json.load(resp)


def test_c2d_send(tmp_path):
    with Serve(tmp_path / "data") as serve:
        data = str(serve.data_dir)
        out = run_cli("c2d", "send", "--device", "device1", "--data", "on", "--prop", "a=1", "--message-id", "m1",
                      "--ack", "full", "--ttl", "60", "--data-dir", data)
        assert out.returncode == 0 and out.stdout.strip() == "m1"
        [pending] = _pending(serve.info)
        assert pending["messageId"] == "m1" and "&a=1" in pending["topic"] and "iothub-ack=full" in pending["topic"]

        out = run_cli("c2d", "send", "--device", "ghost", "--data", "x", "--data-dir", data)
        assert out.returncode == 1 and "device ghost not found" in out.stderr and "Traceback" not in out.stderr
        out = run_cli("c2d", "send", "--device", "device1", "--data", "x", "--prop", "novalue", "--data-dir", data)
        assert out.returncode == 2 and "KEY=VALUE" in out.stderr
        out = run_cli("c2d", "send", "--device", "device1", "--data", "x" * 70000, "--data-dir", data)
        assert out.returncode == 1 and "(413)" in out.stderr


def test_c2d_send_without_a_running_emulator(tmp_path):
    out = run_cli("c2d", "send", "--device", "device1", "--data", "x", "--data-dir", str(tmp_path))
    assert out.returncode == 1 and "no emulator is running" in out.stderr


def test_python_api(emulator_thread, emulator):
    msg = emulator_thread.call(emulator.send_c2d("device1", "hello", properties={"k": "v"}, ttl=30))
    assert msg.body == b"hello" and msg.properties == {"k": "v"}
    assert emulator.registry.view("device1")["cloudToDeviceMessageCount"] == 1
