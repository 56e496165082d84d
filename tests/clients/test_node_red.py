"""`client node-red`: the real Node-RED (npm) running a generated flow, SAS and X.509, direct and through the edge."""

from __future__ import annotations

import json
import os

from azure_iot_harness.clients.hub_target import HubTarget
from azure_iot_harness.clients.node_red import flows
from tests.cli_helpers import cli_env
from tests.clients.helpers import client, failed, ok, own_ca_device, wait_messages


def test_the_flow_is_what_a_user_builds():
    target = HubTarget("myhub.azure-devices.net", "myhub.azure-devices.net", 8883, "/ca.pem", "dev1", password="SharedAccessSignature x")
    nodes, creds = flows(target, [("devices/dev1/messages/events/", "{}")], 1.0)
    by_type = {n["type"]: n for n in nodes}
    broker, tls = by_type["mqtt-broker"], by_type["tls-config"]
    assert (broker["broker"], broker["port"], broker["clientid"], broker["protocolVersion"], broker["usetls"]) == (
        "myhub.azure-devices.net", "8883", "dev1", "4", True,
    )  # fmt: skip
    assert tls["ca"] == "/ca.pem" and tls["verifyservercert"] is True and tls["cert"] == ""
    send = next(n for n in nodes if n["type"] == "function" and n["name"] == "telemetry")
    assert by_type["inject"]["wires"] == [[send["id"]]] and send["wires"] == [[by_type["mqtt out"]["id"]]]
    assert by_type["mqtt out"]["qos"] == "1" and by_type["mqtt out"]["broker"] == broker["id"] and broker["tls"] == tls["id"]
    assert creds == {broker["id"]: {"user": "myhub.azure-devices.net/dev1/?api-version=2021-04-12", "password": "SharedAccessSignature x"}}
    ids = {n["id"] for n in nodes}
    assert len(ids) == len(nodes) and not ids & {n.get("name") for n in nodes}  # Node-RED would take a name for a reference


def test_sas(hub, node_red, tmp_path):
    out = ok(client(hub, "node-red", "--node-red", node_red, "--count", "2", "--interval", "0.1", "--prop", "run=nr-sas", "--work-dir", str(tmp_path)))
    assert "Node-RED connected to mqtts://127.0.0.1:" in out and "acknowledged 2 of 2 messages" in out
    found = wait_messages(hub.info, "device1", 2, where={"run": "nr-sas"})
    assert sorted(json.loads(m["body"])["seq"] for m in found) == [1, 2]
    assert all(m["systemProperties"]["content-type"] == "application/json" for m in found)
    # What Node-RED ran: credentials in plain JSON beside the flow, as without a credentialSecret.
    creds = json.loads((tmp_path / "flows_cred.json").read_text())
    (entry,) = creds.values()
    assert entry["user"] == "localhost/device1/?api-version=2021-04-12" and entry["password"].startswith("SharedAccessSignature sr=localhost%2Fdevices%2Fdevice1&")


def test_x509(hub, node_red):
    ok(client(hub, "node-red", "--node-red", node_red, "--x509", "--count", "1", "--prop", "run=nr-x509"))
    (m,) = wait_messages(hub.info, "x509-device1", 1, where={"run": "nr-x509"})
    assert '"type":"x509Certificate"' in m["systemProperties"]["iothub-connection-auth-method"]


def test_through_the_edge(edge_hub, node_red):
    out = ok(client(edge_hub, "node-red", "--node-red", node_red, "--edge", "--count", "1", "--prop", "run=nr-edge"))
    assert "through gateway" in out
    assert wait_messages(edge_hub.info, "leaf-device1", 1, where={"run": "nr-edge"})


def test_failures_name_the_reason(hub, node_red, tmp_path):
    wrong_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    refused = failed(client(hub, "node-red", "--node-red", node_red, "--sas-key", wrong_key, "--count", "1"))
    assert "Node-RED could not connect" in refused and "CONNACK 5 (not authorized)" in refused
    unreachable = failed(client(hub, "node-red", "--node-red", node_red, "--port", "1", "--count", "1"))
    assert "connection refused" in unreachable
    assert "node-red is not installed" in failed(client(hub, "node-red", "--node-red", str(tmp_path / "none")), 2)
    no_node = cli_env(PATH=str(tmp_path))  # python is started by its full path; node is nowhere
    assert os.path.isabs(node_red)
    assert "Node.js" in failed(client(hub, "node-red", "--node-red", node_red, env=no_node), 2)


def test_x509_with_a_chain_of_ones_own(hub, node_red, tmp_path):
    cert, key = own_ca_device(hub, "nr-chain-1", tmp_path)
    ok(client(hub, "node-red", "--node-red", node_red, "--x509", "--device-id", "nr-chain-1", "--cert", cert, "--cert-key", key,
              "--count", "1", "--prop", "run=nr-chain"))  # fmt: skip
    (m,) = wait_messages(hub.info, "nr-chain-1", 1, where={"run": "nr-chain"})
    assert '"type":"x509Certificate"' in m["systemProperties"]["iothub-connection-auth-method"]
