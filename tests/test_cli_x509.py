"""The X.509 tutorial, step by step, with the command line against `serve`: the convenience
scripts' files (`cert create-…`), the CA uploaded, proven and listed (`ca …`), a device presenting
its full chain; and files made by the scripts' way (openssl, encrypted CA keys) taken as they are."""

from __future__ import annotations

import json
import ssl
import subprocess
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from azure_iot_harness.certs.convenience import ConvenienceCerts
from azure_iot_harness.running.service import HUB_API_VERSION, emulator_service
from tests.cli_helpers import Serve, no_traceback, run_cli
from tests.helpers import wait_for


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    with Serve(tmp_path_factory.mktemp("served-x509")) as serve:
        yield serve


def cli(serve: Serve, *args: str) -> str:
    res = run_cli(*args, "--data-dir", str(serve.data_dir))
    assert res.returncode == 0 and no_traceback(res.stderr), res.stderr
    return res.stdout


def connack(info: dict, device_id: str, certfile: Path, keyfile: Path) -> int:
    client = mqtt.Client(client_id=device_id, clean_session=True, protocol=mqtt.MQTTv311)
    client.username_pw_set(f"{info['hubHostName']}/{device_id}/?api-version=2021-04-12", None)
    ctx = ssl.create_default_context(cafile=info["caFile"])
    ctx.load_cert_chain(certfile, keyfile)
    client.tls_set_context(ctx)
    codes: list[int] = []
    client.on_connect = lambda c, u, flags, rc: codes.append(rc)
    client.connect("localhost", info["mqtt"]["port"], keepalive=60)
    client.loop_start()
    try:
        wait_for(lambda: codes, 15)
        return codes[0]
    finally:
        client.disconnect()
        client.loop_stop()


def register_ca_device(serve: Serve, device_id: str) -> None:
    body = {"deviceId": device_id, "authentication": {"type": "certificateAuthority"}}
    answer = emulator_service(serve.info).call("PUT", f"/devices/{device_id}", body, api=HUB_API_VERSION)
    assert answer.status == 200, answer.raw


def test_the_tutorial_with_the_command_line(served: Serve, tmp_path: Path) -> None:
    out = tmp_path / "certgen"
    made = run_cli("cert", "create-root-and-intermediate", "--out", str(out)).stdout.split()
    root = out / "certs" / "azure-iot-test-only.root.ca.cert.pem"
    assert str(root.resolve()) in made
    # Upload the root: not verified yet, so a device under it is refused.
    uploaded = json.loads(cli(served, "ca", "upload", "tutorial-root", str(root)))
    assert uploaded["properties"]["isVerified"] is False
    run_cli("cert", "create-device-certificate", "tut-dev1", "--out", str(out))
    register_ca_device(served, "tut-dev1")
    full_chain, key = out / "certs" / "iot-device-tut-dev1-full-chain.cert.pem", out / "private" / "iot-device-tut-dev1.key.pem"
    assert connack(served.info, "tut-dev1", full_chain, key) == 5
    # Proof of possession.
    code = cli(served, "ca", "verification-code", "tutorial-root").strip()
    run_cli("cert", "create-verification-certificate", code, "--out", str(out))
    proof = out / "certs" / "iot-device-verification-code.cert.pem"
    assert json.loads(cli(served, "ca", "verify", "tutorial-root", str(proof)))["properties"]["isVerified"] is True
    assert connack(served.info, "tut-dev1", full_chain, key) == 0
    listed = json.loads(cli(served, "ca", "list"))["value"]
    assert "tutorial-root" in {c["name"] for c in listed}
    cli(served, "ca", "delete", "tutorial-root")
    assert connack(served.info, "tut-dev1", full_chain, key) == 5


def test_ca_verbs_report_refusals(served: Serve, tmp_path: Path) -> None:
    out = tmp_path / "c"
    ConvenienceCerts(out).create_root_and_intermediate()
    root = out / "certs" / "azure-iot-test-only.root.ca.cert.pem"
    cli(served, "ca", "upload", "refusals-root", str(root))
    wrong = ConvenienceCerts(out).create_verification_certificate("NOT-THE-CODE").cert
    res = run_cli("ca", "verify", "refusals-root", str(wrong), "--data-dir", str(served.data_dir))
    assert res.returncode != 0 and "error:" in res.stderr and "no verification code was generated" in res.stderr
    assert no_traceback(res.stderr)
    res = run_cli("ca", "delete", "nobody", "--data-dir", str(served.data_dir))
    assert res.returncode != 0 and "no certificate named 'nobody'" in res.stderr
    # DPS has its own list.
    cli(served, "ca", "upload", "dps-root", str(root), "--verified", "--dps")
    assert {c["name"] for c in json.loads(cli(served, "ca", "list", "--dps"))["value"]} == {"dps-root"}


def test_files_made_the_scripts_way_with_encrypted_ca_keys(tmp_path: Path) -> None:
    # certGen.sh protects the CA keys with the password 1234; the verbs read such files.
    out = tmp_path / "scripts"
    (out / "certs").mkdir(parents=True)
    (out / "private").mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=out, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-passout", "pass:1234", "-keyout", "private/azure-iot-test-only.root.ca.key.pem",
            "-out", "certs/azure-iot-test-only.root.ca.cert.pem", "-days", "30", "-subj", "/CN=Azure IoT Hub CA Cert Test Only",
            "-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,digitalSignature,cRLSign,keyCertSign")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-passout", "pass:1234", "-keyout", "private/azure-iot-test-only.intermediate.key.pem",
            "-out", "inter.csr", "-subj", "/CN=Azure IoT Hub Intermediate Cert Test Only")  # fmt: skip
    (out / "inter.ext").write_text("basicConstraints=critical,CA:true\nkeyUsage=critical,digitalSignature,cRLSign,keyCertSign\n")
    openssl("x509", "-req", "-in", "inter.csr", "-CA", "certs/azure-iot-test-only.root.ca.cert.pem", "-CAkey",
            "private/azure-iot-test-only.root.ca.key.pem", "-passin", "pass:1234", "-CAcreateserial", "-days", "30",
            "-extfile", "inter.ext", "-out", "certs/azure-iot-test-only.intermediate.cert.pem")  # fmt: skip
    res = run_cli("cert", "create-device-certificate", "scripted-dev", "--out", str(out))
    assert res.returncode == 0, res.stderr
    chain = (out / "certs" / "iot-device-scripted-dev-full-chain.cert.pem").read_bytes()
    assert chain.count(b"BEGIN CERTIFICATE") == 3
    verify = subprocess.run(["openssl", "verify", "-CAfile", "certs/azure-iot-test-only.root.ca.cert.pem", "-untrusted",
                             "certs/azure-iot-test-only.intermediate.cert.pem", "certs/iot-device-scripted-dev.cert.pem"],
                            cwd=out, capture_output=True, text=True)  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_verbs_need_the_root_first(tmp_path: Path) -> None:
    res = run_cli("cert", "create-device-certificate", "dev", "--out", str(tmp_path))
    assert res.returncode != 0 and "create the root and intermediate first" in res.stderr and no_traceback(res.stderr)
