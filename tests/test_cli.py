"""The command line, run for real: `python -m azure_iot_harness VERB ...` in subprocesses."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from azure_iot_harness.certs import thumbprints
from azure_iot_harness.config import (
    WELL_KNOWN_DPS_POLICY,
    WELL_KNOWN_MODULE_KEYS,
    WELL_KNOWN_POLICIES,
    WELL_KNOWN_SAS_DEVICE_KEYS,
)
from azure_iot_harness.emulator.protocol import sas
from tests.cli_helpers import CliProcess, Serve, cli_env, device1_client, no_traceback, publish_all, run_cli

READY = re.compile(r"^ready mqtts://localhost:(\d+) https://localhost:(\d+)$")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """One emulator for the read-only verbs of this module (per xdist worker)."""
    with Serve(tmp_path_factory.mktemp("served")) as serve:
        yield serve


def data_args(serve: Serve) -> list[str]:
    return ["--data-dir", str(serve.data_dir)]


# ---- serve ------------------------------------------------------------------------------------


def test_serve_prints_strings_and_ready_then_stops_cleanly(tmp_path: Path) -> None:
    serve = Serve(tmp_path)
    try:
        banner = serve.wait_ready()
        info = serve.info
        text = "\n".join(banner)
        for name in ("service", "device", "module", "x509Device"):
            assert info["connectionStrings"][name] in text
        assert f"device1;SharedAccessKey={WELL_KNOWN_SAS_DEVICE_KEYS[0]}" in text
        assert info["caFile"] in text
        ready = READY.match(banner[-1])
        assert ready, banner[-1]
        assert (int(ready[1]), int(ready[2])) == (info["mqtt"]["port"], info["https"]["port"])
        assert info["pid"] == serve.proc.pid
        assert serve.terminate() == 0
    finally:
        serve.terminate()
    assert not (tmp_path / "endpoints.json").exists()
    assert no_traceback(serve.stderr.rest())


def test_serve_in_memory_writes_nothing(tmp_path: Path) -> None:
    with Serve(tmp_path / "data", "--in-memory") as serve:
        assert READY.match(serve.banner[-1])
        assert "in memory" in "\n".join(serve.banner)
        assert not (tmp_path / "data").exists()


def test_serve_with_an_occupied_port_exits_2_without_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for flag in ("--mqtt-port", "--https-port"):
            other = "--https-port" if flag == "--mqtt-port" else "--mqtt-port"
            res = run_cli("serve", "--data-dir", str(tmp_path), flag, port, other, "0")
            assert res.returncode == 2, res
            assert res.stderr.strip().splitlines()[-1].startswith("error: cannot bind")
            assert port in res.stderr and no_traceback(res.stderr)
            assert "ready" not in res.stdout
    assert not (tmp_path / "endpoints.json").exists()


def test_serve_refuses_a_second_emulator_on_the_same_data_folder(served: Serve) -> None:
    res = run_cli("serve", *data_args(served), "--mqtt-port", "0", "--https-port", "0")
    assert res.returncode == 2
    assert f"error: an emulator (pid {served.proc.pid}) is already running" in res.stderr
    assert (served.data_dir / "endpoints.json").exists()  # the running one's file is untouched


def test_serve_edge(tmp_path: Path) -> None:
    from tests.conftest import free_loopback_address

    address = free_loopback_address()
    with Serve(tmp_path / "data", "--edge", "--edge-bind", address, "--edge-mqtt-port", "0") as serve:
        info = serve.info
        assert info["edge"]["host"] == address and info["edge"]["mqtt"]["port"] > 0
        assert any(line.strip().startswith("edgeHub:") for line in serve.banner)
        assert info["connectionStrings"]["leafDevice"].endswith(f";GatewayHostName={address}")
        data = ["--data-dir", str(serve.data_dir)]
        edge = run_cli("connection-string", "--edge-device", "edge-device1", *data)
        assert edge.returncode == 0 and edge.stdout.startswith("HostName=localhost;DeviceId=edge-device1;SharedAccessKey=")
        not_edge = run_cli("connection-string", "--edge-device", "device1", *data)
        assert not_edge.returncode == 1 and "not an IoT Edge device" in not_edge.stderr


def test_serve_host_names_for_firmware_and_the_hint_when_a_device_refuses_the_certificate(tmp_path: Path) -> None:
    import ssl

    names = ["myhub.azure-devices.net", "global.azure-devices-provisioning.net"]
    with Serve(tmp_path / "data", "--host-name", names[0], "--host-name", names[1]) as serve:
        info = serve.info
        ctx = ssl.create_default_context(cafile=info["caFile"])

        def handshake(name: str) -> None:
            with socket.create_connection(("127.0.0.1", info["mqtt"]["port"]), timeout=10) as raw:
                ctx.wrap_socket(raw, server_hostname=name).close()

        for name in names:
            handshake(name)
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake("unknown.azure-devices.net")
        line = next(line for line in iter(lambda: serve.stderr.next(30), None) if "TLS handshake failed" in line)
    assert "WARNING" in line and "'bad certificate'" in line and info["caFile"] in line
    assert all(name in line for name in names)


def test_serve_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "harness.toml"
    config.write_text('no_such_setting = 1\n')
    res = run_cli("serve", "--config", str(config), "--data-dir", str(tmp_path))
    assert res.returncode == 2
    assert res.stderr.startswith("error: unknown setting(s) in config file") and no_traceback(res.stderr)


# ---- info, ca -----------------------------------------------------------------------------------


def test_info_prints_the_running_emulator(served: Serve) -> None:
    res = run_cli("info", *data_args(served))
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    ready = READY.match(served.banner[-1])
    assert ready
    assert (info["mqtt"]["port"], info["https"]["port"]) == (int(ready[1]), int(ready[2]))
    assert info["hubHostName"] == "localhost"
    assert info["pid"] == served.proc.pid
    assert Path(info["caFile"]) == served.data_dir / "pki" / "ca.pem"
    assert info["connectionStrings"]["device"].startswith("HostName=localhost;DeviceId=device1;")


def test_info_finds_the_data_folder_from_the_environment(served: Serve) -> None:
    res = run_cli("info", env=cli_env(AZURE_IOT_HARNESS_DATA_DIR=str(served.data_dir)))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["pid"] == served.proc.pid


@pytest.mark.parametrize("verb", [["info"], ["monitor-events", "--timeout", "1"], ["connection-string", "--device", "device1"]])
def test_verbs_without_a_running_emulator_exit_1(tmp_path: Path, verb: list[str]) -> None:
    res = run_cli(*verb, "--data-dir", str(tmp_path))
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f"error: no emulator is running with data folder {tmp_path} (start one with `azure-iot-harness serve`)"
    )
    assert res.stdout == ""


def test_info_with_a_stale_endpoints_file_exits_1(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / "endpoints.json").write_text(json.dumps({"pid": gone.pid}))
    res = run_cli("info", "--data-dir", str(tmp_path))
    assert res.returncode == 1
    assert "is stale" in res.stderr and "endpoints.json" in res.stderr
    assert res.stderr.startswith(f"error: no emulator is running with data folder {tmp_path}")


def test_ca_prints_the_root_of_the_running_emulator(served: Serve) -> None:
    res = run_cli("ca", *data_args(served))
    assert res.returncode == 0, res.stderr
    assert res.stdout == (served.data_dir / "pki" / "ca.pem").read_text()
    assert res.stdout.startswith("-----BEGIN CERTIFICATE-----")


def test_ca_before_the_first_serve_creates_the_pki_serve_uses(tmp_path: Path) -> None:
    res = run_cli("ca", "--data-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    cert = x509.load_pem_x509_certificate(res.stdout.encode())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    with Serve(tmp_path) as serve:
        assert Path(serve.info["caFile"]).read_text() == res.stdout


# ---- connection-string --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["--device", "device1"], "device"),
        (["--module", "device1/module1"], "module"),
        (["--device", "x509-device1"], "x509Device"),
        (["--service"], "service"),
        (["--service", "--policy", "iothubowner"], "service"),
        (["--dps-service"], "dpsService"),
    ],
)
def test_connection_string_of_well_known_identities(served: Serve, args: list[str], name: str) -> None:
    res = run_cli("connection-string", *args, *data_args(served))
    assert res.returncode == 0, res.stderr
    assert res.stdout == served.info["connectionStrings"][name] + "\n"


def test_connection_strings_are_exactly_azures(served: Serve) -> None:
    port = served.info["https"]["port"]
    out = {
        args[-1]: run_cli("connection-string", *args, *data_args(served)).stdout.strip()
        for args in (["--device", "device1"], ["--module", "device1/module1"], ["--service", "--policy", "service"])
    }
    assert out["device1"] == f"HostName=localhost;DeviceId=device1;SharedAccessKey={WELL_KNOWN_SAS_DEVICE_KEYS[0]}"
    assert out["device1/module1"] == (
        f"HostName=localhost;DeviceId=device1;ModuleId=module1;SharedAccessKey={WELL_KNOWN_MODULE_KEYS[0]}"
    )
    service_key = next(p.key for p in WELL_KNOWN_POLICIES if p.name == "service")
    assert out["service"] == f"HostName=localhost:{port};SharedAccessKeyName=service;SharedAccessKey={service_key}"
    dps = run_cli("connection-string", "--dps-service", *data_args(served)).stdout.strip()
    assert dps == f"HostName=localhost:{port};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={WELL_KNOWN_DPS_POLICY.key}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "device1", "--policy", "service"], "error: --policy goes with --service only"),
        (["--module", "device1"], "error: --module wants DEVICE/MODULE, not 'device1'"),
    ],
)
def test_connection_string_refusals_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    res = run_cli("connection-string", *args, "--data-dir", str(tmp_path))
    assert res.returncode == 2
    assert res.stderr.strip() == message


def test_connection_string_of_an_unknown_policy(served: Serve) -> None:
    res = run_cli("connection-string", "--service", "--policy", "nope", *data_args(served))
    assert res.returncode == 1
    assert res.stderr.startswith("error: no shared access policy named 'nope'")


def test_connection_string_of_an_unknown_device_asks_the_registry(served: Serve) -> None:
    res = run_cli("connection-string", "--device", "no-such-device", *data_args(served))
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr == "error: the hub has no device no-such-device\n"


# ---- sas-token ----------------------------------------------------------------------------------


def test_sas_token_verifies_with_the_key() -> None:
    key = WELL_KNOWN_SAS_DEVICE_KEYS[0]
    res = run_cli("sas-token", "--uri", "localhost/devices/device1", "--key", key, "--ttl", "120")
    assert res.returncode == 0, res.stderr
    token = sas.parse(res.stdout.strip())
    assert token.verify(key) and not token.verify(WELL_KNOWN_SAS_DEVICE_KEYS[1])
    assert token.resource == "localhost/devices/device1" and token.key_name is None
    assert 60 < token.expiry - __import__("time").time() <= 121


def test_sas_token_for_a_policy() -> None:
    pol = WELL_KNOWN_POLICIES[0]
    res = run_cli("sas-token", "--uri", "myhub.azure-devices.net", "--key", pol.key, "--policy", pol.name)
    token = sas.parse(res.stdout.strip())
    assert token.verify(pol.key) and token.key_name == pol.name


def test_sas_token_with_a_key_that_is_not_base64_exits_2() -> None:
    res = run_cli("sas-token", "--uri", "x", "--key", "not base64!")
    assert res.returncode == 2 and res.stderr.startswith("error: ") and no_traceback(res.stderr)


# ---- cert issue ---------------------------------------------------------------------------------


def _issued(stdout: str) -> dict[str, str]:
    lines = stdout.strip().splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["certificate", "key", "sha1", "sha256"]
    return dict(line.split(" ", 1) for line in lines)


def test_cert_issue_signed_by_the_device_ca(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    res = run_cli("cert", "issue", "--cn", "dev-7", "--out", str(out), "--data-dir", str(data))
    assert res.returncode == 0, res.stderr
    got = _issued(res.stdout)
    assert got["certificate"] == str((out / "dev-7.pem").resolve())
    assert got["key"] == str((out / "dev-7.key").resolve())
    certs = x509.load_pem_x509_certificates((out / "dev-7.pem").read_bytes())
    leaf = certs[0]
    assert (got["sha1"], got["sha256"]) == thumbprints(leaf.public_bytes(serialization.Encoding.DER))
    device_ca = x509.load_pem_x509_certificate((data / "pki" / "device-ca.pem").read_bytes())
    assert leaf.issuer == device_ca.subject and certs[1] == device_ca
    leaf.verify_directly_issued_by(device_ca)
    assert leaf.subject.rfc4514_string() == "CN=dev-7"
    key = serialization.load_pem_private_key((out / "dev-7.key").read_bytes(), None)
    assert key.public_key() == leaf.public_key()


def test_cert_issue_self_signed_into_the_current_folder(tmp_path: Path) -> None:
    res = run_cli("cert", "issue", "--cn", "thumb-dev", "--self-signed", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    got = _issued(res.stdout)
    assert got["certificate"] == str((tmp_path / "thumb-dev.pem").resolve())
    cert = x509.load_pem_x509_certificate((tmp_path / "thumb-dev.pem").read_bytes())
    assert cert.issuer == cert.subject
    assert (got["sha1"], got["sha256"]) == thumbprints(cert.public_bytes(serialization.Encoding.DER))
    assert re.fullmatch(r"[0-9A-F]{40}", got["sha1"]) and re.fullmatch(r"[0-9A-F]{64}", got["sha256"])


# ---- monitor-events -----------------------------------------------------------------------------


def _monitor(serve: Serve, *args: str) -> CliProcess:
    return CliProcess("monitor-events", *data_args(serve), *args)


def test_monitor_events_prints_new_telemetry_as_json_lines(tmp_path: Path) -> None:
    with Serve(tmp_path) as serve:
        client = device1_client(serve.info)
        try:
            publish_all(client, [("devices/device1/messages/events/", "before")])
            monitor = _monitor(serve, "--device", "device1", "--count", "2", "--timeout", "60")
            try:
                # It says on stderr when the stream is open: only then is "new" well defined.
                assert monitor.stderr.until("monitoring telemetry from device device1")
                publish_all(
                    client,
                    [
                        ("devices/device1/messages/events/color=red&n=1", '{"t": 21.5}'),
                        ("devices/device1/messages/events/color=blue&%24.ct=application%2Fjson", "second"),
                    ],
                )
                assert monitor.wait(30) == 0, monitor.stderr.rest()
            finally:
                monitor.terminate()
        finally:
            client.loop_stop()
            client.disconnect()
        lines = monitor.stdout.rest().splitlines()
        assert len(lines) == 2, lines
        first, second = (json.loads(line) for line in lines)
        assert first["deviceId"] == "device1" and first["moduleId"] is None
        assert first["body"] == '{"t": 21.5}'
        assert first["properties"] == {"color": "red", "n": "1"}
        assert second["body"] == "second" and second["properties"]["color"] == "blue"
        assert second["sequenceNumber"] > first["sequenceNumber"]
        for msg in (first, second):
            assert {"systemProperties", "enqueuedTime"} <= set(msg)


def test_monitor_events_from_start_and_timeouts(tmp_path: Path) -> None:
    with Serve(tmp_path) as serve:
        client = device1_client(serve.info)
        try:
            publish_all(client, [("devices/device1/messages/events/k=1", "one"), ("devices/device1/messages/events/k=2", "two")])
        finally:
            client.loop_stop()
            client.disconnect()
        args = data_args(serve)
        res = run_cli("monitor-events", *args, "--from-start", "--count", "2", "--timeout", "30")
        assert res.returncode == 0, res.stderr
        assert [json.loads(line)["body"] for line in res.stdout.splitlines()] == ["one", "two"]
        # Only new messages without --from-start: none come, so --count is not reached.
        res = run_cli("monitor-events", *args, "--count", "1", "--timeout", "1")
        assert res.returncode == 1 and res.stdout == ""
        assert res.stderr.strip().splitlines()[-1] == "error: received 0 of 1 messages within 1 s"
        # Without --count, the timeout is a normal end.
        res = run_cli("monitor-events", *args, "--from-start", "--device", "someone-else", "--timeout", "1")
        assert res.returncode == 0 and res.stdout == ""


def test_monitor_events_ends_with_exit_1_when_the_emulator_stops(tmp_path: Path) -> None:
    serve = Serve(tmp_path)
    try:
        serve.wait_ready()
        monitor = _monitor(serve)
        try:
            assert monitor.stderr.until("monitoring telemetry from all devices")
            assert serve.terminate() == 0  # an open stream does not hold the emulator up
            assert monitor.wait(30) == 1
            assert monitor.stderr.rest().splitlines()[-1] == "error: the emulator closed the telemetry stream"
        finally:
            monitor.terminate()
    finally:
        serve.terminate()


# ---- the registry lookup for identities that are not well known ---------------------------------


@pytest.mark.parametrize(
    ("module", "auth", "expected"),
    [
        (None, {"type": "sas", "symmetricKey": {"primaryKey": "cA==", "secondaryKey": "cw=="}},
         "HostName=myhub.azure-devices.net;DeviceId=dev-9;SharedAccessKey=cA=="),
        ("m", {"type": "sas", "symmetricKey": {"primaryKey": "cA==", "secondaryKey": "cw=="}},
         "HostName=myhub.azure-devices.net;DeviceId=dev-9;ModuleId=m;SharedAccessKey=cA=="),
        (None, {"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": "AB"}},
         "HostName=myhub.azure-devices.net;DeviceId=dev-9;x509=true"),
        (None, {"type": "certificateAuthority"}, "HostName=myhub.azure-devices.net;DeviceId=dev-9;x509=true"),
    ],
)
def test_rest_connection_string_formats_the_registry_answer(monkeypatch: pytest.MonkeyPatch, module, auth, expected) -> None:
    from azure_iot_harness import cli

    asked = []

    def fake_get_identity(info: dict, device: str, module: str | None) -> dict:
        asked.append((device, module))
        return {"deviceId": device, "moduleId": module, "authentication": auth}

    monkeypatch.setattr(cli, "get_identity", fake_get_identity)
    info = {"hubHostName": "myhub.azure-devices.net"}
    assert cli.rest_connection_string(info, "dev-9", module) == expected
    assert asked == [("dev-9", module)]


def test_connection_string_of_identities_created_over_rest(tmp_path: Path) -> None:
    import base64
    import http.client
    import ssl

    def put(info: dict, path: str, body: dict) -> dict:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", info["https"]["port"], context=ssl.create_default_context(cafile=info["caFile"]), timeout=30
        )
        owner = next(p for p in WELL_KNOWN_POLICIES if p.name == "iothubowner")
        token = sas.generate(f"localhost:{info['https']['port']}", owner.key, key_name=owner.name)
        headers = {"Authorization": token, "Content-Type": "application/json"}
        conn.request("PUT", f"{path}?api-version=2021-04-12", body=json.dumps(body), headers=headers)
        resp = conn.getresponse()
        doc = json.loads(resp.read())
        conn.close()
        assert resp.status in (200, 201), doc  # created
        return doc

    key = base64.b64encode(b"k" * 32).decode()
    with Serve(tmp_path) as serve:
        info = serve.info
        sas_auth = {"type": "sas", "symmetricKey": {"primaryKey": key, "secondaryKey": base64.b64encode(b"s" * 32).decode()}}
        put(info, "/devices/dev-rest", {"deviceId": "dev-rest", "authentication": sas_auth})
        module = put(info, "/devices/dev-rest/modules/m1", {"deviceId": "dev-rest", "moduleId": "m1"})
        thumbs = {"primaryThumbprint": "A" * 40, "secondaryThumbprint": "B" * 40}
        put(info, "/devices/dev-thumb", {"deviceId": "dev-thumb", "authentication": {"type": "selfSigned", "x509Thumbprint": thumbs}})

        def connection_string(*args: str) -> subprocess.CompletedProcess:
            return run_cli("connection-string", *args, *data_args(serve))

        assert connection_string("--device", "dev-rest").stdout == f"HostName=localhost;DeviceId=dev-rest;SharedAccessKey={key}\n"
        module_key = module["authentication"]["symmetricKey"]["primaryKey"]
        assert module_key  # the hub generates keys for a module created without any
        assert connection_string("--module", "dev-rest/m1").stdout == (
            f"HostName=localhost;DeviceId=dev-rest;ModuleId=m1;SharedAccessKey={module_key}\n"
        )
        assert connection_string("--device", "dev-thumb").stdout == "HostName=localhost;DeviceId=dev-thumb;x509=true\n"
        res = connection_string("--device", "nobody")
        assert (res.returncode, res.stderr) == (1, "error: the hub has no device nobody\n")
        res = connection_string("--module", "dev-rest/nomod")
        assert (res.returncode, res.stderr) == (1, "error: the hub has no module dev-rest/nomod\n")
