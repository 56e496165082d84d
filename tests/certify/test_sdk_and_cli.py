"""The official Python device SDK as a certified device (on 8883 of its own loopback address,
the only port it can use); the command line (exit codes, the three reports); the pytest
plugin's fixture; the catalogue."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from azure_iot_harness.certify import Report, catalogue, profiles
from azure_iot_harness.certify.device import python_command
from azure_iot_harness.certify.runner import free_loopback_address
from azure_iot_harness.errors import ConfigError

from ..node.test_node_sdks import SDKS
from .helpers import DEVICES, TIMEOUTS, broken_command, certify, explain, reference_command, results


def test_python_device_sdk_sample_passes_the_basic_profile() -> None:
    report = _on_8883(python_command(str(DEVICES / "python_sdk_device.py")), "sdk-basic")
    got = results(report)
    assert {k for k, v in got.items() if v != "PASS"} == {"provisioning.registers"}, explain(report)


@pytest.mark.certify_long
def test_python_device_sdk_sample_passes_the_resilience_profile() -> None:
    report = _on_8883(python_command(str(DEVICES / "python_sdk_device.py"), "--keep-alive", "4"), "sdk-resilience", profile="resilience")
    got = results(report)
    assert {k for k, v in got.items() if v != "PASS"} == {c for c in profiles.RESILIENCE if c.startswith("provisioning.")}, explain(report)
    assert {got[c] for c in profiles.RESILIENCE if c.startswith("provisioning.")} == {"SKIP"}


def _cli(tmp_path: Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    timeouts = [f"--timeout={k}={v}" for k, v in TIMEOUTS.items()]
    return subprocess.run(
        [sys.executable, "-m", "azure_iot_harness", "certify", "--device-id", "cli-dev", "--mqtt-port", "0", "--https-port", "0",
         "--run", command, "--telemetry-interval", "1", "--method", "reboot", *timeouts, "--junit", str(tmp_path / "r.xml"),
         "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html"), *args],
        capture_output=True, text=True, timeout=170,
    )  # fmt: skip


def test_cli_certifies_a_device_and_writes_three_reports(tmp_path: Path) -> None:
    done = _cli(tmp_path, reference_command(), "--check", "connect.connects", "methods.answer", "mqtt.client-id")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[1/3] connect.connects PASS" in done.stdout and "CERTIFIED: cli-dev" in done.stdout
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [c["id"] for c in doc["checks"]] == ["connect.connects", "methods.answer", "mqtt.client-id"]
    assert doc["exitCode"] == 0 and all(c["result"] == "PASS" and c["mandatory"] for c in doc["checks"])
    assert any("CONNACK" in line for line in doc["checks"][0]["evidence"]["trace"])
    suite = ET.parse(tmp_path / "r.xml").getroot()
    assert suite.get("tests") == "3" and suite.get("failures") == "0"
    page = (tmp_path / "r.html").read_text()
    assert "<table>" in page and "connect.connects" in page and "<script" not in page and "http" not in page.split("<body>")[0]


def test_cli_exit_code_is_1_when_a_mandatory_check_fails(tmp_path: Path) -> None:
    done = _cli(tmp_path, broken_command("qos2"), "--check", "mqtt.no-qos2")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NOT CERTIFIED" in done.stdout
    failure = ET.parse(tmp_path / "r.xml").getroot().find("testcase/failure")
    assert failure is not None and "FAIL (mandatory)" in failure.get("message", "")
    assert "qos=2" in (failure.text or "")  # the trace excerpt that decided it


def test_cli_usage_errors(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "azure_iot_harness", "certify", "--device-id", "d", "--check", "no.such"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no check no.such" in done.stderr
    done = subprocess.run([sys.executable, "-m", "azure_iot_harness", "certify", "--device-id", "d", "--module-id", "m"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--module-id: a module of the edge device" in done.stderr
    profile = tmp_path / "p.toml"
    profile.write_text('base = "basic"\nremove = ["methods.unknown"]\noptional = ["twin.get"]\n[timeouts]\n"c2d.receive" = 3\n')
    loaded = profiles.load(str(profile))
    assert "methods.unknown" not in loaded.checks and not loaded.mandatory("twin.get") and loaded.timeout("c2d.receive") == 3
    profile.write_text('base = "nope"\n')
    with pytest.raises(ConfigError, match="base must be one of"):
        profiles.load(str(profile))


def test_catalogue_lists_every_check_in_run_order() -> None:
    done = subprocess.run([sys.executable, "-m", "azure_iot_harness", "certify", "--catalogue"], capture_output=True, text=True, timeout=60)
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "`" in line]
    assert [row.split("`")[1] for row in rows] == list(catalogue.ids())


def test_pytest_plugin_fixture(azure_iot_certify) -> None:
    report = azure_iot_certify(run=reference_command(), checks=["connect.connects", "twin.get"], telemetry_interval=1,
                               timeouts=TIMEOUTS)
    assert report.passed, report.summary()


def test_the_readme_catalogue_is_the_generated_one() -> None:
    from azure_iot_harness.certify.report import catalogue_markdown

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("<!-- certify-catalogue:start -->\n", 1)[1].split("<!-- certify-catalogue:end -->", 1)[0]
    assert block == catalogue_markdown(), "README's check catalogue is stale: paste `azure-iot-harness certify --catalogue`"


def _on_8883(command: str, device_id: str, **options: object) -> Report:
    """A certify run on 8883 of a free loopback address (the SDKs reach the hub on 8883 only)."""
    last: Exception | None = None
    for _ in range(10):
        address = free_loopback_address()
        try:
            return certify(command, device_id, bind=address, host=address, mqtt_port=8883, https_port=0, **options)
        except ConfigError as exc:  # the address is taken by a parallel run: draw another
            last = exc
    raise AssertionError(f"no free loopback address: {last}")


def _node_command(node: str) -> str:
    return f"NODE_PATH={shlex.quote(str(SDKS / 'node_modules'))} {shlex.quote(node)} {shlex.quote(str(DEVICES / 'node_sdk_device.js'))}"


def test_node_device_sdk_sample_passes_the_basic_profile_but_unknown_methods(node: str) -> None:
    """The Node.js SDK as shipped has no catch-all method handler: a method nobody registered
    with onDeviceMethod is never answered (the service call times out), so methods.unknown fails."""
    report = _on_8883(_node_command(node), "node-sdk-basic")
    got = results(report)
    assert {k: v for k, v in got.items() if v != "PASS"} == {"provisioning.registers": "SKIP", "methods.unknown": "FAIL"}, explain(report)
    assert "no answer" in report.result("methods.unknown").message or "silence" in report.result("methods.unknown").message


@pytest.mark.certify_long
@pytest.mark.parametrize("sdk", ["python", "node"])
def test_device_sdk_samples_through_the_edge_gateway(sdk: str, request: pytest.FixtureRequest) -> None:
    """The SDKs reach a gateway on 8883 only: the edge listens on 8883 of a loopback address of its own."""
    command = _node_command(request.getfixturevalue("node")) if sdk == "node" else python_command(str(DEVICES / "python_sdk_device.py"))
    report = _on_8883(command, f"{sdk}-sdk-edge", profile="edge", edge_bind=free_loopback_address(), edge_mqtt_port=8883)
    failing = {"methods.unknown"} if sdk == "node" else set()  # as on the basic profile
    assert {k for k, v in results(report).items() if v != "PASS"} == failing, explain(report)
