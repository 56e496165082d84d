"""`azure-iot-harness conformance` in subprocesses: against the in-process emulator, against a
separately started `serve` (--target external), and --target azure without credentials."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from azure_iot_harness.certs.convenience import ConvenienceCerts
from tests.cli_helpers import Serve, cli_env, run_cli
from tests.conftest import free_loopback_address

pytest_plugins = ["pytester"]
MATRIX_ROW = re.compile(r"^paho-sas-direct\s+(pass\s+|\.\s+)+")
NO_CREDENTIALS = {"IOTHUB_CONNECTION_STRING", "PROVISIONING_SERVICE_CONNECTION_STRING", "PROVISIONING_ID_SCOPE", "EVENTHUB_CONNECTION_STRING"}


def _env() -> dict[str, str]:
    return {k: v for k, v in cli_env().items() if k not in NO_CREDENTIALS and not k.startswith("PYTEST_")}


# The whole matrix (about 130 checks) takes 100-175 s on two shared cores: the runs get 280 s.
FULL_RUN_SECONDS = 280


def _conformance(tmp_path: Path, *args: str):
    return run_cli("conformance", "-n", "2", "--basetemp", str(tmp_path / "t"), *args, timeout=FULL_RUN_SECONDS, env=_env(), cwd=tmp_path)


def _assert_all_passed(result, tmp_path: Path, *, whole_matrix: bool = True) -> None:
    out = result.stdout
    assert result.returncode == 0, out[-5000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", out) and " failed" not in out, out[-3000:]
    assert "conformance PASS telemetry_with_properties [paho-sas-direct]" in out
    assert "conformance PASS telemetry_with_properties [paho-sas-edge]" in out
    assert "conformance matrix" in out and any(MATRIX_ROW.match(line) for line in out.splitlines()), out[-3000:]
    assert "<table>" in (tmp_path / "conformance-report.html").read_text()
    if whole_matrix:
        assert "conformance PASS cloud_to_device [c-device-sas-direct]" in out  # the C device's rows run too
        assert (tmp_path / "conformance-junit.xml").read_text().count("<testcase") >= 50


# The full matrix runs mosquitto and Node-RED: the fixtures make sure they are installed before
# the run starts. Without them, the rows of those programs skipped, and whether Node-RED was
# there depended on whether another test (the client variants' Node-RED tests, whose fixture
# installs it into .cache/node-red) had run first.


@pytest.mark.timeout(FULL_RUN_SECONDS + 20)
def test_against_the_in_process_emulator(tmp_path: Path, mosquitto: str, node_red: str) -> None:
    _assert_all_passed(_conformance(tmp_path), tmp_path)


@pytest.mark.timeout(FULL_RUN_SECONDS + 80)
@pytest.mark.parametrize("checks", ["telemetry", pytest.param("all", marks=pytest.mark.conformance_full)])
def test_against_a_separately_started_serve(tmp_path: Path, mosquitto: str, node_red: str, checks: str) -> None:
    # serve on 8883/443 of its own loopback address and its edge on 8883 of another, so the
    # official SDK's checks run too, directly and through the gateway. The in-process run above
    # covers the whole matrix; here the default suite runs every variant's telemetry or registration check (each
    # connects, authenticates, provisions or sends on this target), -m conformance_full all of it.
    for _ in range(5):
        address, edge_address = free_loopback_address(), free_loopback_address()
        serve = Serve(tmp_path / "data", "--bind", address, "--host", address, "--mqtt-port", "8883", "--https-port", "443",
                      "--edge", "--edge-bind", edge_address, "--edge-mqtt-port", "8883")
        try:
            serve.wait_ready()
            break
        except AssertionError:
            serve.terminate()
            if "in use" not in serve.stderr.rest():  # its whole stderr: `seen` holds only lines read
                raise
    else:
        pytest.fail("no free loopback address for 8883/443")
    try:
        info = serve.info
        # The x509-chain rows need a CA verified on the target's hub: upload one, as a user would.
        ConvenienceCerts(tmp_path / "ca").create_root_and_intermediate()
        root, root_key = tmp_path / "ca" / "certs" / "azure-iot-test-only.root.ca.cert.pem", tmp_path / "ca" / "private" / "azure-iot-test-only.root.ca.key.pem"
        uploaded = run_cli("ca", "upload", "conformance-root", str(root), "--verified", "--data-dir", str(tmp_path / "data"))
        assert uploaded.returncode == 0, uploaded.stderr
        result = _conformance(
            tmp_path, "--target", "external", "--x509-ca-cert", str(root), "--x509-ca-key", str(root_key),
            "--hub-connection-string", info["connectionStrings"]["service"],
            "--dps-connection-string", info["connectionStrings"]["dpsService"],
            "--id-scope", info["dps"]["idScope"], "--ca-file", info["caFile"], "--mqtt-port", str(info["mqtt"]["port"]),
            "--conformance-edge-host", info["edge"]["host"], "--conformance-edge-port", str(info["edge"]["mqtt"]["port"]),
            *(["-k", "telemetry_with_properties or dps_registration"] if checks == "telemetry" else []),
        )
    finally:
        serve.terminate()
    _assert_all_passed(result, tmp_path, whole_matrix=checks == "all")
    skips = [line for line in result.stdout.splitlines() if line.startswith("skip reason: ")]
    assert "skipped" not in result.stdout.splitlines()[-1], skips
    assert "conformance PASS telemetry_with_properties [sdk-x509-edge]" in result.stdout
    assert "conformance PASS telemetry_with_properties [sdk-x509-chain-dps]" in result.stdout
    assert "conformance PASS telemetry_with_properties [c-device-x509-edge]" in result.stdout


def test_external_on_ephemeral_ports_skips_the_sdk_with_a_reason(tmp_path: Path) -> None:
    with Serve(tmp_path / "data") as serve:
        info = serve.info
        result = _conformance(
            tmp_path, "--target", "external", "-k", "telemetry",
            "--hub-connection-string", info["connectionStrings"]["service"], "--ca-file", info["caFile"],
            "--mqtt-port", str(info["mqtt"]["port"]), "--amqp-port", str(info["amqp"]["port"]),
        )
    out = result.stdout
    assert result.returncode == 0, out[-4000:]
    assert "conformance PASS telemetry_with_properties [paho-sas-direct]" in out
    assert f"the azure-iot-device SDK can only use port 8883; this target's MQTT port is {info['mqtt']['port']}" in out
    assert "no DPS settings" in out
    assert "target external: no IoT Edge gateway (--conformance-edge-host or AZURE_IOT_CONFORMANCE_EDGE_HOST)" in out


def test_azure_without_credentials_skips_everything_for_one_reason(tmp_path: Path) -> None:
    result = _conformance(tmp_path, "--target", "azure")
    out = result.stdout
    assert result.returncode == 0, out[-4000:]
    assert re.search(r"^=+ \d+ skipped in ", out.splitlines()[-1]), out[-2000:]
    reasons = {line for line in out.splitlines() if line.startswith("skip reason: ")}
    assert reasons == {"skip reason: target azure: missing settings IOTHUB_CONNECTION_STRING, PROVISIONING_SERVICE_CONNECTION_STRING, PROVISIONING_ID_SCOPE"}


def test_a_check_without_exactly_one_validation_marker_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from azure_iot_harness.conformance.suite import *\n")
    pytester.makepyfile(
        test_checks='''
        import pytest

        def test_unmarked():
            pass

        @pytest.mark.azure_validated
        @pytest.mark.azure_unvalidated
        def test_both():
            pass

        @pytest.mark.azure_unvalidated
        def test_fine():
            pass
        '''
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*exactly one of azure_validated, azure_unvalidated*", "*test_unmarked: no marker*", "*test_both: ?'azure_validated', 'azure_unvalidated'?"])
