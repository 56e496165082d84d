"""The fault kinds: a registry, so another part (the TLS adapter's faults) can add its own.

A `Kind` says where its faults fire (`point`, or for `drop` the point its `when` parameter
names), which parameters it takes and what in Azure or in the field it imitates (the support
matrix's "Fault injection" rows). `check_params` is pure: it validates a request's parameters
and fills in the defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...errors import FaultError

# Where a fault fires. The session layers and services ask the FaultBook at these points.
CONNECT = "connect"  # a CONNECT was read, before authentication
PUBLISH = "publish"  # a PUBLISH from the client
SUBSCRIBE = "subscribe"  # a SUBSCRIBE from the client
PING = "ping"  # a PINGREQ
TWIN = "twin"  # a twin request on $iothub/twin/
METHOD = "method"  # a direct-method call to the device
DPS_REGISTER = "dps-register"  # a DPS register or status request (MQTT or HTTPS)
TLS = "tls"  # a TLS handshake on the device endpoint (the TLS adapter's faults)
NOW = "now"  # acts when added (drop now, expire a token, suspend the hub)


@dataclass(frozen=True)
class Param:
    name: str
    type: type  # int, float or str
    default: Any = None
    choices: tuple = ()
    required: bool = False


@dataclass(frozen=True)
class Kind:
    name: str
    point: str
    imitates: str  # what it reproduces, in Azure or the field
    params: tuple[Param, ...] = ()
    # For kinds whose point depends on a parameter (drop: when=now|publish|subscribe).
    point_of: Callable[[dict], str] | None = field(default=None, compare=False)

    def point_for(self, params: dict) -> str:
        return self.point_of(params) if self.point_of is not None else self.point


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add a kind (or replace one of the same name)."""
    KINDS[kind.name] = kind
    return kind


def get(name: str) -> Kind:
    kind = KINDS.get(name)
    if kind is None:
        raise FaultError(f"unknown fault kind {name!r}; known kinds: {', '.join(sorted(KINDS))}")
    return kind


def check_params(kind: Kind, given: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a fault of `kind`, converted and checked, defaults filled in."""
    known = {p.name: p for p in kind.params}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise FaultError(
            f"fault {kind.name} takes no parameter {', '.join(unknown)}" + (f" (it takes {', '.join(known)})" if known else "")
        )
    out: dict[str, Any] = {}
    for p in kind.params:
        if p.name not in given or given[p.name] is None:
            if p.required:
                raise FaultError(f"fault {kind.name} needs the parameter {p.name}")
            if p.default is not None:
                out[p.name] = p.default
            continue
        value = given[p.name]
        try:
            if p.type is str:
                if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                    raise ValueError
                value = str(value)
            elif p.type is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                value = int(value)
            elif p.type is float:
                if isinstance(value, bool):
                    raise ValueError
                value = float(value)
                if value < 0:
                    raise ValueError
        except (TypeError, ValueError):
            raise FaultError(f"fault {kind.name}: {p.name} must be {_TYPE_WORDS[p.type]}, not {given[p.name]!r}") from None
        if p.choices and value not in p.choices:
            raise FaultError(f"fault {kind.name}: {p.name} must be one of {', '.join(map(str, p.choices))}, not {value!r}")
        out[p.name] = value
    return out


_TYPE_WORDS = {int: "an integer", float: "a number of seconds (0 or more)", str: "a string"}


def _drop_point(params: dict) -> str:
    return {"now": NOW, "publish": PUBLISH, "subscribe": SUBSCRIBE}[params["when"]]


# ---- the built-in kinds ---------------------------------------------------------------------------

for _kind in (
    Kind(
        "drop", NOW, "a connection lost in the field: a TCP reset (a crashed gateway, NAT timeout) or the hub closing it",
        (Param("how", str, "reset", ("reset", "close")), Param("when", str, "now", ("now", "publish", "subscribe"))),
        point_of=_drop_point,
    ),
    Kind("refuse-connect", CONNECT, "IoT Hub refusing a CONNECT: CONNACK 3 (server unavailable, throttled) or 5 (not authorized)",
         (Param("code", int, 3, (1, 2, 3, 4, 5)),)),
    Kind("withhold-connack", CONNECT, "a hub that accepts the TCP/TLS connection and never answers the CONNECT"),
    Kind("withhold-puback", PUBLISH, "a PUBACK lost on the way: the device must resend with DUP and the same packet id"),
    Kind("withhold-suback", SUBSCRIBE, "a SUBACK lost on the way: the device must resend the SUBSCRIBE"),
    Kind("withhold-pingresp", PING, "a dead link that still looks open: the device must notice the missing PINGRESP"),
    Kind("delay-twin", TWIN, "a slow twin answer", (Param("seconds", float, 5.0),)),
    Kind("drop-twin-response", TWIN, "a twin answer that never comes"),
    Kind("throttle-twin", TWIN, "IoT Hub's throttling answer on the twin topic (status 429)"),
    Kind("delay-method", METHOD, "a direct-method request that reaches the device late", (Param("seconds", float, 5.0),)),
    Kind("method-timeout", METHOD, "a direct-method request that never reaches the device: the call ends in 504 GatewayTimeout"),
    Kind("dps-throttle", DPS_REGISTER, "DPS throttling: status 429 with retry-after", (Param("retryAfter", int, 3),)),
    Kind("dps-error", DPS_REGISTER, "a DPS failure: 5xx, or 401 (the device must re-provision or stop)",
         (Param("status", int, 503, (400, 401, 403, 404, 500, 502, 503)),)),
    Kind("dps-assign-hub", DPS_REGISTER, "DPS assigning the device to another hub (a hub migration)",
         (Param("hostName", str, required=True),)),
    Kind("expire-token", NOW, "a SAS token reaching its expiry: the hub closes the connection"),
    Kind("hub-suspend", NOW, "an IoT Hub outage: the MQTT endpoint stops answering (given a duration, it resumes after it)"),
    Kind("hub-resume", NOW, "the end of an outage"),
    Kind("edge-upstream-suspend", NOW, "an IoT Edge gateway losing its upstream (given a duration, it resumes after it)"),
    Kind("edge-upstream-resume", NOW, "the gateway's upstream back"),
):  # fmt: skip
    register(_kind)
