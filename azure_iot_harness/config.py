"""One typed configuration, built from a TOML file, then `AZURE_IOT_HARNESS_*` variables, then flags.

`HubSettings`, `DpsSettings` and `EdgeSettings` are the slices of it each service is built
from. Also the well-known development identities: like Azurite's `devstoreaccount1`, their keys
are published (README) so that a connection string can be pasted without asking the emulator.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from .errors import ConfigError

ENV_PREFIX = "AZURE_IOT_HARNESS_"

# Permissions of IoT Hub shared access policies.
REGISTRY_READ = "RegistryRead"
REGISTRY_WRITE = "RegistryWrite"
SERVICE_CONNECT = "ServiceConnect"
DEVICE_CONNECT = "DeviceConnect"


@dataclass(frozen=True)
class Policy:
    name: str
    key: str
    permissions: frozenset[str]


# The hub's default policies, with published development keys.
WELL_KNOWN_POLICIES: tuple[Policy, ...] = (
    Policy(
        "iothubowner",
        "mbkFS9h3dgFjx6qC+xgn4pRdYE3qmB2YGwvF+rRULCA=",
        frozenset({REGISTRY_READ, REGISTRY_WRITE, SERVICE_CONNECT, DEVICE_CONNECT}),
    ),
    Policy("service", "nJj85JQXZ/HMcN2B6cY5s1YkUE2xHJKo4uTFpW2SaIE=", frozenset({SERVICE_CONNECT})),
    Policy("device", "kFd1Jt/iHfFsrfxOWHH3HYJQbnnz81KVuQ4pVBdnORA=", frozenset({DEVICE_CONNECT})),
    Policy("registryRead", "bzPx7zStcWt7Tf4vNXBRIMHT/j2FefY2GRM2yis5SUA=", frozenset({REGISTRY_READ})),
    Policy(
        "registryReadWrite",
        "PpGDZ5Ij5PbzgFazDiKucJO7geURgTL52MUys3pjkoM=",
        frozenset({REGISTRY_READ, REGISTRY_WRITE}),
    ),
)

# Well-known identities created in every new store.
WELL_KNOWN_SAS_DEVICE = "device1"
WELL_KNOWN_SAS_DEVICE_KEYS = (
    "a9Vi5MJXRxvil8e+AwwaVYAmg0BHctGN94xsblra44I=",
    "sN0lfwu9x6r2MBj9D9hYKliQNJc+2ADWBFcpqIM/HSM=",
)
WELL_KNOWN_MODULE = "module1"  # a module of device1
WELL_KNOWN_MODULE_KEYS = (
    "HYjeH3Mg9tpeR6mxoVGUwdOP0TPMep5BbynZcaFbnHg=",
    "Tj3Aqn/pdcwB/A/Mtf8liQE8o1Nd87CnLXd3xA29HnE=",
)
WELL_KNOWN_CA_DEVICE = "x509-device1"  # certificateAuthority: any cert from the device CA with CN = id

# The Device Provisioning Service's well-known development identities, linked to the emulator's hub.
WELL_KNOWN_DPS_ID_SCOPE = "0ne00000001"
WELL_KNOWN_DPS_POLICY = Policy(
    "provisioningserviceowner",
    "4w5cxG0hB+lM6E3Z7s68Khn9585U8g6tZK5m0RY8NEU=",
    frozenset({"EnrollmentRead", "EnrollmentWrite", "RegistrationStatusRead", "RegistrationStatusWrite"}),
)
# Symmetric-key enrollment group: a device's key is HMAC-SHA256(group key, registration id).
WELL_KNOWN_SYMMETRIC_GROUP = "symmetric-group1"
WELL_KNOWN_SYMMETRIC_GROUP_KEYS = (
    "bj9IaLImY1I+BFlcoFh4xEB297KIKp2CFoe23+EwwKQ=",
    "stIjod5nZfvkYjJJlTdvo08tvU+dN/IaapM5KZMI8pM=",
)
# X.509 enrollment group whose signing certificate is the development device CA.
WELL_KNOWN_X509_GROUP = "x509-group1"

# IoT Edge: the edge device (the gateway) and a leaf device in its scope.
WELL_KNOWN_EDGE_DEVICE = "edge-device1"
WELL_KNOWN_EDGE_DEVICE_KEYS = (
    "f75Os+2CvU17qmnr7D8Okrjrg3wkza4GBEYfajA1vBs=",
    "3yvXb4dDj1QW5KkWzwA5t4Qm5AotR+nJbyKzeydE35I=",
)
WELL_KNOWN_LEAF_DEVICE = "leaf-device1"
WELL_KNOWN_LEAF_DEVICE_KEYS = (
    "pi553HkN6ryyMp4ITWM9+KCYUfOLKpEFSmOj4+7VzFk=",
    "3yl9sGUXWVZKcUZFXTNyBRrkt9rwVvMsH2zA9WUzMDA=",
)


# The file `serve` writes into its data folder (where it listens, the CA file, the well-known
# identities) and the other commands read (running.endpoints) to find it.
ENDPOINTS_FILE = "endpoints.json"


def default_data_dir() -> Path:
    return Path.home() / ".azure-iot-harness"


@dataclass
class Config:
    """Every setting of the emulator. The README's configuration table lists the same fields."""

    data_dir: Path = field(default_factory=default_data_dir)
    # Keep all state in memory and generate a fresh PKI (tests); nothing is written to data_dir.
    in_memory: bool = False
    # The hub's host name: what devices put in HostName, usernames and SAS `sr`.
    host: str = "localhost"
    # More names for the server certificate (the bind address and loopback names are always in).
    host_names: list[str] = field(default_factory=list)
    bind: str = "127.0.0.1"
    mqtt_port: int = 8883
    https_port: int = 443
    # Seconds a client may stay silent without a keep-alive: IoT Hub's load-balancer cap.
    max_idle_seconds: float = 1767.0
    # Seconds a TCP client gets to finish TLS and send CONNECT.
    connect_timeout: float = 10.0
    # Seconds a delivered cloud-to-device message stays locked before it is delivered again.
    c2d_lock_seconds: float = 60.0
    # "full" fsyncs every group commit (survives power loss); "normal" survives a killed process.
    durability: str = "full"
    # DPS: its ID scope; how many answers say "assigning" before the one that says "assigned"
    # (the answer to the register request counts; 0 answers "assigned" at once); the
    # retry-after seconds sent with them; register requests allowed per minute (0: no limit,
    # above it 429 with retry-after).
    dps_id_scope: str = WELL_KNOWN_DPS_ID_SCOPE
    dps_assigning_polls: int = 1
    dps_retry_after: int = 3
    dps_registrations_per_minute: int = 0
    # IoT Edge (`serve --edge`): an edgeHub next to the hub, on 8883 of its own loopback address
    # by default, since the Python device SDK reaches a gateway on port 8883 only.
    edge: bool = False
    edge_bind: str = "127.0.0.2"
    edge_host: str = ""  # the gateway host name devices use; empty: edge_bind
    edge_mqtt_port: int = 8883
    edge_device_id: str = WELL_KNOWN_EDGE_DEVICE
    edge_routes: str = ""  # a JSON file with $edgeHub desired properties; empty: FROM /* INTO $upstream
    edge_workload_port: int = 0
    log_level: str = "info"
    # The packet trace (GET /_emulator/trace): on by default; the last N packets of each
    # connection and at most this many in all; payloads only when asked for.
    trace: bool = True
    trace_per_connection: int = 256
    trace_max_events: int = 100_000
    trace_payloads: bool = False
    # Honour Azure's fault-injection message properties (AzIoTHub_FaultOperationType…), as the
    # test hubs of the official SDKs' end-to-end tests do.
    azure_fault_properties: bool = True

    @property
    def hub_name(self) -> str:
        return self.host.split(".", 1)[0]

    def validate(self) -> Config:
        for name in ("mqtt_port", "https_port", "edge_mqtt_port", "edge_workload_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"{name} must be between 0 and 65535, not {port}")
        if self.durability not in ("full", "normal"):
            raise ConfigError(f"durability must be 'full' or 'normal', not {self.durability!r}")
        if not self.dps_id_scope or not self.dps_id_scope.isalnum():
            raise ConfigError(f"dps_id_scope must be letters and digits (like {WELL_KNOWN_DPS_ID_SCOPE}), not {self.dps_id_scope!r}")
        for name in ("dps_assigning_polls", "dps_retry_after", "dps_registrations_per_minute", "trace_per_connection", "trace_max_events"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        if not self.host or "/" in self.host:
            raise ConfigError(f"host must be a host name, not {self.host!r}")
        return self

    def with_overrides(self, **overrides: Any) -> Config:
        """A copy with some settings changed, converted to their field types."""
        values = _check_names(overrides, "overrides")
        return dataclasses.replace(self, **{k: _coerce(k, v) for k, v in values.items()}).validate()

    @classmethod
    def load(
        cls,
        file: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        flags: Mapping[str, Any] | None = None,
    ) -> Config:
        """Build from a TOML file, then the environment, then flags the user actually passed.

        A flag whose value is None counts as not passed.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        file = file or env.get(ENV_PREFIX + "CONFIG")
        if file:
            try:
                with open(file, "rb") as fh:
                    data = tomllib.load(fh)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read config file {file}: {exc}") from exc
            values.update(_check_names(data, f"config file {file}"))
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = raw
        values.update({k: v for k, v in (flags or {}).items() if v is not None})
        return cls(**{k: _coerce(k, v) for k, v in _check_names(values, "settings").items()}).validate()


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


# ---- the slices each service is built from ------------------------------------------------------


@dataclass(frozen=True)
class HubSettings:
    host: str
    c2d_lock_seconds: float
    seed_edge_identities: bool  # the well-known edge device and its leaf (serve --edge)
    policies: tuple[Policy, ...] = WELL_KNOWN_POLICIES

    @classmethod
    def of(cls, config: Config) -> HubSettings:
        return cls(host=config.host, c2d_lock_seconds=config.c2d_lock_seconds, seed_edge_identities=config.edge)


@dataclass(frozen=True)
class DpsSettings:
    id_scope: str
    host: str  # the DPS host name, which is the hub's, and the one linked hub
    assigning_polls: int
    retry_after: int
    registrations_per_minute: int
    policies: tuple[Policy, ...] = (WELL_KNOWN_DPS_POLICY,)

    @classmethod
    def of(cls, config: Config) -> DpsSettings:
        return cls(
            id_scope=config.dps_id_scope,
            host=config.host,
            assigning_polls=config.dps_assigning_polls,
            retry_after=config.dps_retry_after,
            registrations_per_minute=config.dps_registrations_per_minute,
        )


@dataclass(frozen=True)
class EdgeSettings:
    device_id: str
    host: str
    bind: str
    mqtt_port: int
    workload_port: int
    routes: dict | None  # $edgeHub desired properties; None: FROM /* INTO $upstream
    max_idle_seconds: float
    connect_timeout: float
    pki_folder: Path | None  # where the edge CA chain is kept; None: in memory

    @classmethod
    def of(cls, config: Config) -> EdgeSettings:
        """ConfigError when the routes file cannot be read."""
        return cls(
            device_id=config.edge_device_id,
            host=config.edge_host or config.edge_bind,
            bind=config.edge_bind,
            mqtt_port=config.edge_mqtt_port,
            workload_port=config.edge_workload_port,
            routes=_read_routes(config.edge_routes),
            max_idle_seconds=config.max_idle_seconds,
            connect_timeout=config.connect_timeout,
            pki_folder=None if config.in_memory else config.data_dir / "pki",
        )


def _read_routes(path: str) -> dict | None:
    if not path:
        return None
    try:
        return json.loads(Path(path).expanduser().read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read edge routes from {path}: {exc}") from None


def _check_names(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting(s) in {where}: {', '.join(unknown)}")
    return dict(values)


def _coerce(name: str, value: Any) -> Any:
    """Turn strings from the environment (and TOML values) into the field's type."""
    default = _FIELDS[name].default
    if default is dataclasses.MISSING:
        default = cast("Callable[[], Any]", _FIELDS[name].default_factory)()
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off", ""):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, Path):
            return Path(value).expanduser()
        if isinstance(default, list):
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            return list(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, int):
            return int(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid value for {name}: {value!r}") from exc
