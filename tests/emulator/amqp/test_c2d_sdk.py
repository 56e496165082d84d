"""Cloud-to-device sending and feedback over AMQP with the unmodified service SDKs.

azure-iot-hub's `send_c2d_message` goes through uamqp, which dials port 5671 and trusts only
certifi's CA bundle: each test gets an emulator on the standard ports of its own loopback
address, and the SDK runs in a subprocess whose `certifi` is a copy made to trust the
development CA with `azure-iot-harness trust --bundle` (the test's environment is untouched).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import certifi
import paho.mqtt.client as mqtt
import pytest

from azure_iot_harness.emulator.app import Emulator
from azure_iot_harness.emulator.protocol import sas
from tests.cli_helpers import run_cli
from tests.helpers import device_token, https, wait_for


@pytest.fixture
def overlay(tmp_path: Path, standard_ports_emulator: Emulator) -> Path:
    """A folder holding a copy of certifi that trusts the emulator's CA, to put on PYTHONPATH."""
    target = tmp_path / "overlay"
    shutil.copytree(Path(certifi.__file__).parent, target / "certifi")
    bundle = target / "certifi" / "cacert.pem"
    done = run_cli("trust", "--bundle", str(bundle), "--ca", str(standard_ports_emulator.ca_file))
    assert done.returncode == 0, done.stderr
    assert "BEGIN CERTIFICATE" in bundle.read_text().split("azure-iot-harness development CA: BEGIN")[1]
    return target


def _run_sdk(overlay: Path, script: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(overlay), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=120)


def _send_script(emu: Emulator, device: str, ack: str = "full") -> str:
    return f"""
        from azure.iot.hub import IoTHubRegistryManager
        rm = IoTHubRegistryManager.from_connection_string({emu.connection_string(policy="service")!r})
        try:
            rm.send_c2d_message({device!r}, "hello", properties={{"iothub-ack": {ack!r}, "contentType": "application/json", "custom": "v"}})
            print("sent")
        except Exception as exc:
            print("failed", type(exc).__name__, exc)
        finally:
            rm.amqp_svc_client.disconnect_sync()
    """


def _device(emu: Emulator, device: str) -> mqtt.Client:
    client = mqtt.Client(client_id=device, clean_session=False)
    client.username_pw_set(f"{emu.host}/{device}/?api-version=2021-04-12", device_token(emu, device))
    client.tls_set(ca_certs=str(emu.ca_file))
    client.messages = []  # type: ignore[attr-defined]
    client.on_message = lambda c, u, m: client.messages.append(m)  # type: ignore[attr-defined]
    client.connect(emu.config.bind, emu.mqtt_port)
    client.loop_start()
    client.subscribe(f"devices/{device}/messages/devicebound/#", qos=1)
    return client


def test_send_c2d_message_reaches_the_device_and_feedback_follows(standard_ports_emulator: Emulator, overlay: Path) -> None:
    emu = standard_ports_emulator
    client = _device(emu, "device1")
    try:
        wait_for(lambda: emu.hub.sessions.get(("device1", None)) and emu.hub.sessions[("device1", None)].state.subscriptions, what="subscribed")
        done = _run_sdk(overlay, _send_script(emu, "device1"))
        assert "sent" in done.stdout, done.stdout + done.stderr
        wait_for(lambda: client.messages, what="the C2D message")  # type: ignore[attr-defined]
        msg = client.messages[0]  # type: ignore[attr-defined]
        assert msg.payload == b"hello"
        assert "custom=v" in msg.topic and "iothub-ack=full" in msg.topic and "%24.ct=application%2Fjson" in msg.topic
    finally:
        client.disconnect()
        client.loop_stop()
    # the PUBACK completed it: a Success record comes on the REST feedback route
    body = wait_for(lambda: _feedback(emu), what="a feedback batch")
    assert [r["statusCode"] for r in body] == ["Success"] and body[0]["deviceId"] == "device1"


def _feedback(emu: Emulator) -> list | None:
    status, headers, body = https(emu, "GET", "/messages/serviceBound/feedback?api-version=2021-04-12")
    if status != 200:
        return None
    token = next(v for k, v in headers.items() if k.lower() == "etag").strip('"')
    assert https(emu, "DELETE", f"/messages/serviceBound/feedback/{token}?api-version=2021-04-12")[0] == 204
    return body if isinstance(body, list) else json.loads(body)


def test_c2d_refusals(standard_ports_emulator: Emulator, overlay: Path) -> None:
    emu = standard_ports_emulator
    done = _run_sdk(overlay, _send_script(emu, "no-such-device"))
    assert "failed" in done.stdout, done.stdout + done.stderr
    # a full queue (50 pending for an offline device): the 51st is refused, the others stay
    assert https(emu, "PUT", "/devices/full0?api-version=2021-04-12", {"deviceId": "full0"})[0] == 200
    for i in range(50):
        assert _queue(emu, "full0", i)
    done = _run_sdk(overlay, _send_script(emu, "full0"))
    assert "failed" in done.stdout, done.stdout + done.stderr
    assert len(emu.hub.c2d.pending("full0")) == 50
    # the endpoint still serves others
    done = _run_sdk(overlay, _send_script(emu, "device1"))
    assert "sent" in done.stdout, done.stdout + done.stderr


def _queue(emu: Emulator, device: str, i: int) -> bool:
    status, _, _ = https(emu, "POST", f"/_emulator/c2d/{device}", {"data": f"m{i}"}, token=emu.service_token())
    return status in (200, 201, 202, 204)


def test_iot_hub_form_redirects_uamqp_to_the_event_hubs_endpoint(standard_ports_emulator: Emulator, overlay: Path) -> None:
    """The documented way from an IoT Hub service connection string to the Event Hubs-compatible
    one: uamqp attaches `messages/events/…` with SASL PLAIN, gets `amqp:link:redirect`, and
    azure-eventhub then reads with the string built from the redirect's hostname and address."""
    emu = standard_ports_emulator
    policy = next(p for p in emu.policies if p.name == "service")
    token = sas.generate(emu.host, policy.key, key_name="service")
    script = f"""
        import re, urllib.parse
        from uamqp import ReceiveClient, Source
        from uamqp.errors import LinkRedirect
        from azure.eventhub import EventHubConsumerClient
        user = urllib.parse.quote_plus("service@sas.root.{emu.config.hub_name}")
        uri = "amqps://" + user + ":" + urllib.parse.quote_plus({token!r}) + "@{emu.host}/messages/events/ConsumerGroups/$Default/Partitions/0"
        client = ReceiveClient(Source(uri))
        try:
            client.receive_message_batch(max_batch_size=1)
            print("no redirect")
        except LinkRedirect as redirect:
            address = redirect.address.decode()
            name = re.search(r":\\d+/(.*)/ConsumerGroups", address).group(1)
            print("redirect", redirect.hostname.decode(), redirect.port, address)
            eh = "Endpoint=sb://" + redirect.hostname.decode() + "/;SharedAccessKeyName=service;SharedAccessKey={policy.key};EntityPath=" + name
            with EventHubConsumerClient.from_connection_string(eh, consumer_group="$Default") as consumer:
                print("partitions", consumer.get_partition_ids())
        finally:
            client.close()
    """
    done = _run_sdk(overlay, script)
    assert f"redirect {emu.host} 5671 amqps://{emu.host}:5671/{emu.eventhub_name}/ConsumerGroups/$Default/Partitions/0" in done.stdout, done.stdout + done.stderr
    assert "partitions ['0', '1', '2', '3']" in done.stdout, done.stdout + done.stderr



def test_a_wrong_key_over_sasl_plain_fails_sasl(standard_ports_emulator: Emulator, overlay: Path) -> None:
    """uamqp with the credentials in the address (the az CLI's and the samples' redirect) sends
    SASL PLAIN: a token signed with a wrong key is answered with the SASL outcome `auth`, which
    uamqp reports as a failed authentication before any link is attached."""
    emu = standard_ports_emulator
    token = sas.generate(emu.host, "A" * 43 + "=", key_name="service")
    script = f"""
        import urllib.parse
        from uamqp import ReceiveClient, Source
        user = urllib.parse.quote_plus("service@sas.root.{emu.config.hub_name}")
        uri = "amqps://" + user + ":" + urllib.parse.quote_plus({token!r}) + "@{emu.host}/messages/events/ConsumerGroups/$Default/Partitions/0"
        client = ReceiveClient(Source(uri))
        try:
            client.receive_message_batch(max_batch_size=1)
            print("no error")
        except Exception as exc:
            print("failed", type(exc).__name__, exc)
        finally:
            client.close()
    """
    done = _run_sdk(overlay, script)
    # uamqp words a failed SASL outcome as a closed connection "in an unexpected error state"
    # (what `az iot hub monitor-events --login` users see with a wrong key); a refusal at attach
    # would be a LinkDetach naming UnauthorizedAccess.
    assert "failed ConnectionClose" in done.stdout, done.stdout + done.stderr
