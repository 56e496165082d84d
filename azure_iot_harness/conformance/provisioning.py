"""Device Provisioning Service registration, three ways: raw MQTT and the device REST API (the
client programs' one DPS client, `clients.dps_client`), and the official SDK's
ProvisioningDeviceClient. Each returns the assignment (the registrationState)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..clients.dps_client import DpsTarget, register_mqtt, register_rest, registration_body


@dataclass(frozen=True)
class DpsEndpoint:
    host: str  # where to connect; also the TLS server name
    mqtt_port: int
    https_port: int
    id_scope: str
    ca_file: str | None


@dataclass(frozen=True)
class Registrant:
    registration_id: str
    key: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


def _target(dps: DpsEndpoint, reg: Registrant, port: int) -> DpsTarget:
    return DpsTarget(dps.host, port, dps.ca_file, dps.id_scope, reg.registration_id, reg.key, reg.cert_file, reg.key_file)


def register_over_mqtt(dps: DpsEndpoint, reg: Registrant, timeout: float = 60) -> dict[str, Any]:
    return register_mqtt(_target(dps, reg, dps.mqtt_port), registration_body(reg.registration_id), timeout=timeout)


def register_over_rest(dps: DpsEndpoint, reg: Registrant, timeout: float = 60) -> dict[str, Any]:
    return register_rest(_target(dps, reg, dps.https_port), registration_body(reg.registration_id), timeout=timeout)


def register_sdk(dps: DpsEndpoint, reg: Registrant, timeout: float = 60) -> dict[str, Any]:
    from azure.iot.device import X509, ProvisioningDeviceClient

    ca = open(dps.ca_file).read() if dps.ca_file else None
    kw: dict[str, Any] = {"server_verification_cert": ca} if ca else {}
    if reg.cert_file:
        client = ProvisioningDeviceClient.create_from_x509_certificate(
            provisioning_host=dps.host, registration_id=reg.registration_id, id_scope=dps.id_scope,
            x509=X509(cert_file=reg.cert_file, key_file=reg.key_file), **kw)
    elif reg.key:
        client = ProvisioningDeviceClient.create_from_symmetric_key(
            provisioning_host=dps.host, registration_id=reg.registration_id, id_scope=dps.id_scope, symmetric_key=reg.key, **kw)
    else:
        raise ValueError(f"registration {reg.registration_id} has neither a certificate nor a key")
    result = client.register()
    state = result.registration_state
    assert result.status == "assigned" and state is not None, f"registration ended {result.status}"
    return {"assignedHub": state.assigned_hub, "deviceId": state.device_id}


REGISTER: dict[str, Callable[[DpsEndpoint, Registrant], dict[str, Any]]] = {
    "mqtt": register_over_mqtt,
    "rest": register_over_rest,
    "sdk": register_sdk,
}
