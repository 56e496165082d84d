"""Profiles: which checks a run takes, which of them are mandatory, and their timeouts.

Built in: `basic` (connection, features, IoT Hub's rules), `resilience` (basic plus drops,
refusals, withheld answers, DPS faults), `full` (resilience plus hostile TLS and the long
run), `edge` (basic's checks with the device as a leaf of the emulator's edge gateway, plus
the gateway's own checks). A FILE is TOML:

    base = "basic"                     # start from a built-in profile (default: none)
    checks = ["connect.connects", …]   # or list the checks outright
    add = ["resilience.backoff"]       # more checks (kept in the catalogue's order)
    remove = ["methods.unknown"]
    optional = ["tls.cipher"]          # not mandatory: a FAIL does not fail the run
    mandatory = ["resilience.takeover"]
    [timeouts]                         # seconds, per check
    "c2d.receive" = 10
    [device]                           # what the device is like (flags win)
    methods = ["reboot"]
    without = ["c2d"]
    telemetry_interval = 2
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import catalogue

BASIC = (
    "connect.connects", "provisioning.registers", "telemetry.publishes", "twin.get", "twin.desired", "twin.reported",
    "c2d.receive", "methods.answer", "methods.unknown", "mqtt.connect-first", "mqtt.client-id", "credentials.username",
    "credentials.sas-token", "mqtt.keep-alive", "mqtt.no-qos2", "mqtt.subscriptions", "mqtt.topics", "mqtt.will", "telemetry.property-bag",
    "tls.version", "tls.cipher",
)  # fmt: skip
RESILIENCE = BASIC + (
    "resilience.reconnect-delay", "telemetry.resend-dup", "telemetry.no-loss", "c2d.queued", "twin.reconcile", "twin.throttled",
    "credentials.token-renewal", "resilience.azure-faults", "resilience.dead-link", "resilience.backoff",
    "resilience.connack-timeout", "resilience.takeover", "credentials.permanent-refusal", "provisioning.retry-after",
    "provisioning.backoff", "provisioning.reprovision", "provisioning.follows-hub",
)  # fmt: skip
FULL = RESILIENCE + tuple(c for c in catalogue.ids() if c.startswith("tls.") or c.startswith("soak."))
# The device as a leaf of an IoT Edge gateway: basic's checks through it, and the gateway's own.
EDGE = tuple(c for c in catalogue.ids() if c in {*BASIC, "edge.connects", "edge.store-and-forward"} - {"provisioning.registers"})
# Optional everywhere unless a profile file says otherwise: expectations beyond Azure's documented rules.
OPTIONAL = frozenset({"tls.cipher", "resilience.connack-timeout", "resilience.takeover", "soak.accounting"})
BUILT_IN = {"basic": BASIC, "resilience": RESILIENCE, "full": FULL, "edge": EDGE}


@dataclass
class Profile:
    name: str
    checks: list[str]
    optional: set[str] = field(default_factory=lambda: set(OPTIONAL))
    timeouts: dict[str, float] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)

    def mandatory(self, check_id: str) -> bool:
        return check_id not in self.optional

    def timeout(self, check_id: str) -> float:
        return float(self.timeouts.get(check_id, catalogue.get(check_id).timeout))

    def only(self, ids: list[str]) -> Profile:
        """The same profile limited to `ids` (--check); an id outside the catalogue is an error."""
        _known(ids, "--check")
        return Profile(self.name, [c for c in catalogue.ids() if c in ids], self.optional, self.timeouts, self.device)


def _known(ids: list[str], where: str) -> None:
    unknown = [i for i in ids if i not in catalogue.ids()]
    if unknown:
        raise ConfigError(f"{where}: no check {', '.join(unknown)} (see `azure-iot-harness certify --catalogue`)")


def _ordered(ids: set[str]) -> list[str]:
    return [c for c in catalogue.ids() if c in ids]


def load(name_or_file: str) -> Profile:
    if name_or_file in BUILT_IN:
        return Profile(name_or_file, list(BUILT_IN[name_or_file]))
    path = Path(name_or_file)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--profile: {name_or_file!r} is neither {', '.join(BUILT_IN)} nor a file") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"--profile {path}: {exc}") from None
    unknown = sorted(set(doc) - {"base", "checks", "add", "remove", "optional", "mandatory", "timeouts", "device"})
    if unknown:
        raise ConfigError(f"--profile {path}: unknown keys {', '.join(unknown)}")
    base = doc.get("base")
    if base is not None and base not in BUILT_IN:
        raise ConfigError(f"--profile {path}: base must be one of {', '.join(BUILT_IN)}, not {base!r}")
    chosen = set(BUILT_IN[base]) if base else set()
    for key in ("checks", "add", "remove", "optional", "mandatory"):
        _known(list(doc.get(key, [])), f"--profile {path} ({key})")
    if "checks" in doc:
        chosen = set(doc["checks"])
    chosen |= set(doc.get("add", []))
    chosen -= set(doc.get("remove", []))
    optional = (set(OPTIONAL) | set(doc.get("optional", []))) - set(doc.get("mandatory", []))
    timeouts = doc.get("timeouts", {})
    _known(list(timeouts), f"--profile {path} (timeouts)")
    return Profile(path.stem, _ordered(chosen), optional, {k: float(v) for k, v in timeouts.items()}, dict(doc.get("device", {})))
