"""What a conformance run points at: the in-process emulator, an external emulator or service
known by its connection strings, or real Azure. A target without its settings carries one
skip reason that every check reports."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..certs.chain import Issued, issue
from ..certs.chain import load as load_issuer
from ..certs.pki import self_signed_cert
from ..clients.dps_client import GLOBAL_HOST
from ..config import WELL_KNOWN_EDGE_DEVICE
from ..errors import HarnessError
from ..running import connection_strings
from .amqp import AMQPS_PORT, AmqpC2D, AmqpError, ServiceCredentials, event_hubs_connection_string
from .credentials import DeviceCredentials, write_cert
from .provisioning import DpsEndpoint, Registrant
from .service import C2DSender, HubService, TelemetrySource

TARGETS = ("emulator", "external", "azure")

# option name → (environment variable, help)
SETTINGS = {
    "hub_connection_string": ("IOTHUB_CONNECTION_STRING", "the hub's service connection string (iothubowner)"),
    "dps_connection_string": ("PROVISIONING_SERVICE_CONNECTION_STRING", "the DPS service connection string"),
    "id_scope": ("PROVISIONING_ID_SCOPE", "the DPS ID scope"),
    "ca_file": ("AZURE_IOT_CONFORMANCE_CA_FILE", "the CA file devices trust (external; default: the system's)"),
    "mqtt_port": ("AZURE_IOT_CONFORMANCE_MQTT_PORT", "the MQTT/TLS port of hub and DPS (external; default 8883)"),
    "amqp_port": ("AZURE_IOT_CONFORMANCE_AMQP_PORT", "the hub's AMQPS port (external; default 5671)"),
    "eventhub_connection_string": ("EVENTHUB_CONNECTION_STRING", "the hub's Event Hubs-compatible connection string (default: the one IoT Hub's redirect names)"),
    "conformance_edge_host": ("AZURE_IOT_CONFORMANCE_EDGE_HOST", "the IoT Edge gateway's host name (GatewayHostName) for the edge path (external, azure)"),
    "conformance_edge_port": ("AZURE_IOT_CONFORMANCE_EDGE_PORT", "the IoT Edge gateway's MQTT/TLS port (default 8883)"),
    "conformance_edge_device": ("AZURE_IOT_CONFORMANCE_EDGE_DEVICE", "the IoT Edge device whose children leaf devices become (default edge-device1)"),
    "x509_ca_cert": ("AZURE_IOT_CONFORMANCE_X509_CA_CERT", "a CA certificate verified on the hub, for the x509-chain rows (external, azure)"),
    "x509_ca_key": ("AZURE_IOT_CONFORMANCE_X509_CA_KEY", "that CA's private key (PEM, unencrypted)"),
}
NO_CHAIN = (
    "the x509-chain rows need a CA verified on this target's hub: the emulator targets upload one of their own; "
    "for others give its certificate and key (--x509-ca-cert/--x509-ca-key or AZURE_IOT_CONFORMANCE_X509_CA_CERT/_KEY)"
)
NO_EDGE = "this target has no IoT Edge gateway (--conformance-edge-host or AZURE_IOT_CONFORMANCE_EDGE_HOST)"


@dataclass(frozen=True)
class EdgeGateway:
    """An IoT Edge device's edgeHub that leaf devices connect through."""

    host: str  # the gateway host name (GatewayHostName; TLS server name and socket address)
    port: int
    device_id: str


@dataclass
class Target:
    name: str
    skip_reason: str | None = None
    service: HubService | None = None
    hub_host: str = ""
    mqtt_port: int = 8883
    ca_file: str | None = None
    dps: DpsEndpoint | None = None
    work: Path = field(default_factory=Path)
    keepalive: Any = None  # the in-process emulator's thread, kept alive with the target
    edge: EdgeGateway | None = None  # the gateway of the "edge" path, if the target has one
    edge_reason: str = NO_EDGE  # why the edge path skips when `edge` is None
    chain_ca: Issued | None = None  # a CA verified on the hub: the x509-chain rows' devices chain to it
    chain_reason: str = NO_CHAIN  # why the x509-chain rows skip when `chain_ca` is None
    _intermediate: Issued | None = None

    @property
    def sdk_reason(self) -> str | None:
        """Why the official device SDK cannot reach this target, if it cannot."""
        if self.mqtt_port != 8883:
            return f"the azure-iot-device SDK can only use port 8883; this target's MQTT port is {self.mqtt_port}"
        return None

    @property
    def sdk_edge_reason(self) -> str | None:
        """Why the official device SDK cannot reach this target's gateway, if it cannot."""
        if self.edge is not None and self.edge.port != 8883:
            return f"the azure-iot-device SDK can only reach a gateway on port 8883; this target's edge port is {self.edge.port}"
        return None

    def creds(self, device_id: str, *, key: str | None = None, cert: tuple[str, str] | None = None,
              via_edge: bool = False) -> DeviceCredentials:
        """Credentials for the hub, or (via_edge) for the hub through the edge gateway: the
        username and SAS audience keep the hub's host, the socket goes to the gateway."""
        if via_edge:
            assert self.edge is not None, self.edge_reason
        edge = self.edge if via_edge else None
        return DeviceCredentials(
            device_id=device_id, host=self.hub_host, mqtt_address=edge.host if edge else self.hub_host,
            mqtt_port=edge.port if edge else self.mqtt_port, ca_file=self.ca_file, key=key,
            cert_file=cert and cert[0], key_file=cert and cert[1], gateway_host=edge.host if edge else None,
        )

    def new_cert(self, name: str) -> tuple[tuple[str, str], Any]:
        """A self-signed certificate (registered by thumbprint: works on Azure without uploading a CA)."""
        cert = self_signed_cert(name)
        return write_cert(self.work, name, cert.cert_pem, cert.key_pem), cert

    def new_chain_cert(self, name: str) -> tuple[tuple[str, str], Issued]:
        """A device certificate from an intermediate under `chain_ca`; the file holds the device's
        certificate and that intermediate, as a device presents them."""
        assert self.chain_ca is not None, self.chain_reason
        if self._intermediate is None:
            self._intermediate = issue("azure-iot-harness conformance intermediate", self.chain_ca, ca=True)
        leaf = issue(name, self._intermediate, ca=False)
        return write_cert(self.work, name, leaf.cert_pem + self._intermediate.cert_pem, leaf.key_pem), self._intermediate

    def registrant(self, registration_id: str, *, key: str | None = None, cert: tuple[str, str] | None = None) -> Registrant:
        return Registrant(registration_id, key=key, cert_file=cert and cert[0], key_file=cert and cert[1])


def setting(config: Any, name: str) -> str | None:
    value = config.getoption(f"conformance_{name}")
    return value if value not in (None, "") else os.environ.get(SETTINGS[name][0]) or None


def chain_ca_from_settings(config: Any) -> tuple[Issued | None, str]:
    """The CA (certificate and key) the x509-chain rows issue from, when the settings name one."""
    cert, key = setting(config, "x509_ca_cert"), setting(config, "x509_ca_key")
    if not (cert and key):
        return None, NO_CHAIN
    try:
        return load_issuer(Path(cert).read_bytes(), Path(key).read_bytes()), ""
    except (OSError, ValueError, TypeError) as exc:
        return None, f"cannot load the x509-chain CA from {cert} and {key}: {exc}"


def edge_from_settings(config: Any, name: str) -> tuple[EdgeGateway | None, str]:
    host = setting(config, "conformance_edge_host")
    if not host:
        return None, f"target {name}: {NO_EDGE.removeprefix('this target has ')}"
    port = int(setting(config, "conformance_edge_port") or 8883)
    return EdgeGateway(host, port, setting(config, "conformance_edge_device") or WELL_KNOWN_EDGE_DEVICE), ""


def amqp_back_end(hub_connection_string: str, ca_file: str | None, *, port: int = AMQPS_PORT,
                  eventhub_connection_string: str | None = None) -> tuple[TelemetrySource, C2DSender]:
    """Telemetry and C2D as a back end has them, the same for every target: azure-eventhub on the
    Event Hubs-compatible endpoint (the one IoT Hub's redirect names, unless given) and C2D over
    AMQP on `/messages/devicebound`."""
    from .eventhub import EventHubTelemetry  # azure-eventhub

    context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    creds = ServiceCredentials.parse(hub_connection_string)
    endpoint = None
    try:
        if not eventhub_connection_string:
            eventhub_connection_string, endpoint = event_hubs_connection_string(creds, context, port=port)
        telemetry = EventHubTelemetry(eventhub_connection_string, ca_file=ca_file, endpoint=endpoint)
    except (OSError, AmqpError) as exc:
        raise HarnessError(f"the hub's AMQP endpoint ({creds.host}:{port}) answered no back end: {exc}") from exc
    return telemetry, AmqpC2D(creds, context, port=port)


def emulator_target(factory: Any, work: Path) -> Target:
    # 8883/443 on a per-worker loopback address, the edge on 8883 of another: every variant can run
    thread = factory.get(standard_ports=True, edge=True)
    emu = thread.emulator
    hub_cs = emu.connection_string(policy="iothubowner")
    telemetry, c2d = amqp_back_end(hub_cs, str(emu.ca_file), port=emu.amqp_port)
    service = HubService(
        hub_connection_string=hub_cs,
        dps_connection_string=emu.dps_connection_string(),
        id_scope=emu.config.dps_id_scope,
        ca_file=str(emu.ca_file),
        telemetry=telemetry,
        c2d=c2d,
    )
    dps = DpsEndpoint(emu.host, emu.mqtt_port, emu.https_port, emu.config.dps_id_scope, str(emu.ca_file))
    edge = EdgeGateway(emu.edge.host, emu.edge.mqtt_port, emu.edge.device_id) if emu.edge is not None else None
    root = issue("azure-iot-harness conformance root", ca=True)
    service.upload_verified_ca("conformance-root", root.cert_pem)
    return Target("emulator", None, service, emu.host, emu.mqtt_port, str(emu.ca_file), dps, work, thread, edge,
                  "" if edge else "target emulator: started without an edge", chain_ca=root, chain_reason="")


def external_target(config: Any, work: Path) -> Target:
    hub_cs = setting(config, "hub_connection_string")
    if not hub_cs:
        return Target("external", skip_reason="target external: no hub connection string (--hub-connection-string or IOTHUB_CONNECTION_STRING)")
    ca = setting(config, "ca_file")
    port = int(setting(config, "mqtt_port") or 8883)
    telemetry, c2d = amqp_back_end(hub_cs, ca, port=int(setting(config, "amqp_port") or AMQPS_PORT),
                                   eventhub_connection_string=setting(config, "eventhub_connection_string"))
    service = HubService(hub_connection_string=hub_cs, dps_connection_string=setting(config, "dps_connection_string"),
                         id_scope=setting(config, "id_scope"), ca_file=ca, telemetry=telemetry, c2d=c2d)
    host = service.hub_host
    dps = None
    dps_cs = setting(config, "dps_connection_string")
    if dps_cs and setting(config, "id_scope"):
        dps_host, _, https = connection_strings.parse(dps_cs)["HostName"].partition(":")
        dps = DpsEndpoint(dps_host, port, int(https or 443), setting(config, "id_scope") or "", ca)
    edge, why = edge_from_settings(config, "external")
    chain_ca, chain_why = chain_ca_from_settings(config)
    return Target("external", None, service, host, port, ca, dps, work, None, edge, why, chain_ca, chain_why)


def azure_target(config: Any, work: Path) -> Target:
    names = ("hub_connection_string", "dps_connection_string", "id_scope")
    missing = [SETTINGS[n][0] for n in names if not setting(config, n)]
    if missing:
        return Target("azure", skip_reason=f"target azure: missing settings {', '.join(missing)}")
    hub_cs = setting(config, "hub_connection_string") or ""
    # The same back end as the emulator target's: Azure's trust store, port 5671.
    telemetry, c2d = amqp_back_end(hub_cs, None, eventhub_connection_string=setting(config, "eventhub_connection_string"))
    service = HubService(hub_connection_string=hub_cs, dps_connection_string=setting(config, "dps_connection_string"),
                         id_scope=setting(config, "id_scope"), ca_file=None, telemetry=telemetry, c2d=c2d)
    dps = DpsEndpoint(GLOBAL_HOST, 8883, 443, setting(config, "id_scope") or "", None)
    edge, why = edge_from_settings(config, "azure")
    chain_ca, chain_why = chain_ca_from_settings(config)
    return Target("azure", None, service, service.hub_host, 8883, None, dps, work, None, edge, why, chain_ca, chain_why)
