"""Device credentials as a test hands them to firmware or an SDK: connection string, key or
certificate files, the CA file, and where to connect."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..clients.hub_target import API_VERSION
from ..emulator.protocol import sas
from ..running import connection_strings


@dataclass(frozen=True)
class DeviceCredentials:
    device_id: str
    host: str  # the hub host name (TLS server name, SAS audience)
    mqtt_address: str  # where to open the socket (often the host itself)
    mqtt_port: int
    ca_file: str | None
    key: str | None = None  # SAS: the device's primary key
    cert_file: str | None = None  # X.509: the certificate (leaf first) and its key
    key_file: str | None = None
    module_id: str | None = None
    gateway_host: str | None = None  # an IoT Edge gateway between the device and the hub (GatewayHostName)

    @property
    def auth(self) -> str:
        return "x509" if self.cert_file else "sas"

    @property
    def client_id(self) -> str:
        return f"{self.device_id}/{self.module_id}" if self.module_id else self.device_id

    @property
    def username(self) -> str:
        return f"{self.host}/{self.client_id}/?api-version={API_VERSION}"

    @property
    def resource_uri(self) -> str:
        return f"{self.host}/devices/{self.device_id}" + (f"/modules/{self.module_id}" if self.module_id else "")

    def sas_token(self, ttl: int = 3600, key: str | None = None) -> str:
        key = key or self.key
        if not key:
            raise ValueError(f"{self.client_id} authenticates with a certificate, not a SAS key")
        return sas.generate(self.resource_uri, key, ttl=ttl)

    @property
    def connection_string(self) -> str:
        return connection_strings.device_string(self.host, self.device_id, module_id=self.module_id, key=self.key, gateway=self.gateway_host)

    @property
    def password(self) -> str | None:
        return self.sas_token() if self.key else None


def write_cert(folder: Path, name: str, cert_pem: bytes, key_pem: bytes) -> tuple[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    key.chmod(0o600)
    return str(cert), str(key)
