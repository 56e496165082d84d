"""Connection strings in Azure's format (`Key=Value;…`): the one parser, and the one builder of
the service, DPS service, device and module strings the client side hands out."""

from __future__ import annotations

from typing import Any

from ..config import WELL_KNOWN_DPS_POLICY, WELL_KNOWN_POLICIES
from ..errors import ConfigError
from .endpoints import https_host_port
from .errors import CommandError


def parse(text: str) -> dict[str, str]:
    """The fields of a connection string, keys and values stripped (a value may hold `=`, as
    base64 keys do). ConfigError naming the first part that is not KEY=VALUE; which keys are
    required is the caller's to check."""
    fields: dict[str, str] = {}
    for part in text.strip().strip(";").split(";"):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{part!r} is not KEY=VALUE")
        fields[key.strip()] = value.strip()
    return fields


def build(*fields: tuple[str, str | None]) -> str:
    """`Key=Value;…` in the order given; fields whose value is None are left out."""
    return ";".join(f"{key}={value}" for key, value in fields if value is not None)


def policy_string(host: str, policy: str, key: str) -> str:
    """A service connection string: a shared access policy of a hub or a DPS."""
    return build(("HostName", host), ("SharedAccessKeyName", policy), ("SharedAccessKey", key))


def device_string(
    host: str, device_id: str, *, module_id: str | None = None, key: str | None = None, gateway: str | None = None
) -> str:
    """A device's (or module's) connection string: its key, or `x509=true` when it has none;
    `GatewayHostName` when it connects through an IoT Edge gateway."""
    return build(
        ("HostName", host),
        ("DeviceId", device_id),
        ("ModuleId", module_id),
        ("SharedAccessKey", key),
        ("x509", None if key else "true"),
        ("GatewayHostName", gateway),
    )


def service_string(info: dict[str, Any], policy: str = "iothubowner") -> str:
    """The running emulator's hub service connection string for one of its policies."""
    pol = next((p for p in WELL_KNOWN_POLICIES if p.name == policy), None)
    if pol is None:
        names = ", ".join(p.name for p in WELL_KNOWN_POLICIES)
        raise CommandError(f"no shared access policy named {policy!r} (the hub has {names})")
    return policy_string(https_host_port(info), pol.name, pol.key)


def dps_service_string(info: dict[str, Any]) -> str:
    """The running emulator's DPS service connection string (DPS shares the HTTPS port)."""
    return policy_string(https_host_port(info), WELL_KNOWN_DPS_POLICY.name, WELL_KNOWN_DPS_POLICY.key)
