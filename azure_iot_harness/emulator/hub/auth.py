"""Who is connecting: CONNECT (username, client id, password, client certificate) → Principal.

Refusals carry IoT Hub's CONNACK codes: 2 for a client id that does not match the username,
3 for a disabled device, 5 for every credential problem (the reason goes to the log only, as
the hub tells a client nothing more than "not authorized").
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ...config import DEVICE_CONNECT, Policy
from ...errors import CertificateError, ConnackCode, ConnectRefused, SasTokenError
from ..protocol import sas, x509
from ..protocol.chains import Trust
from ..protocol.messages import AuthMethod
from ..protocol.topics import HubUsername
from .registry import Registry

log = logging.getLogger("azure_iot_harness.hub")


@dataclass(frozen=True)
class Principal:
    device_id: str
    module_id: str | None
    auth: AuthMethod
    generation_id: str
    token_expiry: int | None  # SAS expiry (seconds since the epoch); None for X.509
    model_id: str | None

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.device_id, self.module_id)

    @property
    def name(self) -> str:
        return f"{self.device_id}/{self.module_id}" if self.module_id else self.device_id


def authenticate(
    *,
    username: HubUsername,
    client_id: str,
    password: str | None,
    peer_chain: Sequence[bytes],
    registry: Registry,
    hub_host: str,
    policies: Iterable[Policy],
    trust: Trust,
    audience_hosts: Iterable[str] = (),
    now: dt.datetime | None = None,
) -> Principal:
    """Check a CONNECT's identity and credentials. `audience_hosts` are more host names a SAS
    token's audience may name (an edge gateway accepts its own as well as the hub's). `peer_chain`:
    the certificates the client sent, leaf first; `trust`: the CAs uploaded to the hub."""
    host, _ = sas.split_host(username.host)
    if host != hub_host.lower():
        raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"username names host {username.host!r}, this hub is {hub_host!r}")
    if client_id != username.client_id:
        raise ConnectRefused(
            ConnackCode.IDENTIFIER_REJECTED, f"client id {client_id!r} does not match {username.client_id!r} from the username"
        )
    device_id, module_id = username.device_id, username.module_id
    who = _who(device_id, module_id)
    device = registry.get(device_id)
    doc = registry.get(device_id, module_id) if module_id else device
    if doc is None or device is None:
        raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"{who} is not registered")
    now = now or dt.datetime.now(dt.UTC)
    creds = _Credentials(password, tuple(peer_chain), [hub_host, *audience_hosts], tuple(policies), trust, now)
    chain = username.params.get("auth-chain")
    if chain:
        method, expiry = _check_chain(chain, username.client_id, registry, creds)
    else:
        method, expiry = creds.check(device_id, module_id, doc)
    for d in (device, doc):
        if d.get("status", "enabled") != "enabled":
            raise ConnectRefused(ConnackCode.SERVER_UNAVAILABLE, f"{who} is disabled")
    return Principal(device_id, module_id, method, doc["generationId"], expiry, username.params.get("model-id"))


def _who(device_id: str, module_id: str | None) -> str:
    return f"module {device_id}/{module_id}" if module_id else f"device {device_id}"


@dataclass(frozen=True)
class _Credentials:
    password: str | None
    peer_chain: tuple[bytes, ...]
    hosts: list[str]
    policies: tuple[Policy, ...]
    trust: Trust
    now: dt.datetime

    def check(self, device_id: str, module_id: str | None, doc: dict) -> tuple[AuthMethod, int | None]:
        """The credentials prove this identity: (how, SAS expiry or None)."""
        who = _who(device_id, module_id)
        kind = doc["authentication"]["type"]
        scope = "module" if module_id else "device"
        if self.password:
            try:
                token = sas.parse(self.password)
            except SasTokenError as exc:
                raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"{who}: {exc}") from None
            if token.expired(self.now.timestamp()):
                raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"{who}: SAS token expired at se={token.expiry}")
            target = ["devices", device_id] + (["modules", module_id] if module_id else [])
            named = sas.split_host(token.resource)[0]
            host = next((h for h in self.hosts if h.lower() == named), self.hosts[0])
            if token.key_name:
                return _check_policy_token(token, target, host, self.policies, who), token.expiry
            return _check_identity_token(token, target, host, doc, kind, scope, who), token.expiry
        if kind in ("selfSigned", "certificateAuthority"):
            if not self.peer_chain:
                raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"{who} authenticates with X.509 but presented no client certificate")
            try:
                if kind == "selfSigned":
                    prints = doc["authentication"]["x509Thumbprint"]
                    allowed = [prints.get("primaryThumbprint"), prints.get("secondaryThumbprint")]
                    x509.check_thumbprint(self.peer_chain[0], allowed, self.now)
                else:
                    cn = f"{device_id}/{module_id}" if module_id else device_id
                    verified = x509.check_ca_signed(self.peer_chain, cn, self.trust, self.now)
                    for note in verified.notes:
                        log.info("%s: %s", who, note)
            except CertificateError as exc:
                raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"{who}: {exc}") from None
            return AuthMethod(scope, "x509Certificate"), None
        raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"{who} uses {kind} authentication but sent no SAS token")


def _check_chain(chain: str, client_id: str, registry: Registry, creds: _Credentials) -> tuple[AuthMethod, int | None]:
    """`auth-chain={identity};{edge}[;{parent edge}…]`: an IoT Edge gateway connects on behalf of
    an identity below it with its own credentials. Each hop must be a child of the next, and the
    last one an IoT Edge device whose credentials the connection carries."""
    hops = chain.split(";")
    if len(hops) < 2 or hops[0] != client_id or any(not h for h in hops):
        raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"auth-chain {chain!r} must start with {client_id!r} and name its gateway")
    for child, parent in zip(hops, hops[1:]):
        parent_doc = registry.get(parent)
        if parent_doc is None or not (parent_doc.get("capabilities") or {}).get("iotEdge"):
            raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"auth-chain: {parent!r} is not an IoT Edge device")
        if "/" in child:
            if child.split("/", 1)[0] != parent:
                raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"auth-chain: module {child!r} does not belong to {parent!r}")
            continue
        child_doc = registry.get(child)
        scope = parent_doc.get("deviceScope")
        if child_doc is None or not scope or scope not in (child_doc.get("parentScopes") or []):
            raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"auth-chain: {child!r} is not a child of the edge device {parent!r}")
    gateway = hops[-1]
    method, expiry = creds.check(gateway, None, registry.get(gateway))  # type: ignore[arg-type]  # the gateway's identity was looked up above
    return AuthMethod("device", method.type), expiry


def _check_identity_token(
    token: sas.SasToken, target: list[str], hub_host: str, doc: dict, kind: str, scope: str, who: str
) -> AuthMethod:
    if kind != "sas":
        raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"{who} authenticates with {kind}, not with a SAS token")
    res_host, res_path = sas.split_host(token.resource)
    if len(res_path) != len(target) or not sas.covers(token.resource, hub_host, target):
        if res_path[:1] == ["registrations"] or "/registrations/" in token.resource:
            raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"{who}: the SAS token is for DPS ({token.resource}), not the hub")
        raise ConnectRefused(
            ConnackCode.NOT_AUTHORIZED, f"{who}: SAS token audience {token.resource!r} is not {hub_host}/{'/'.join(target)}"
        )
    keys = doc["authentication"]["symmetricKey"]
    if not any(k and token.verify(k) for k in (keys.get("primaryKey"), keys.get("secondaryKey"))):
        raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"{who}: SAS signature matches neither the primary nor the secondary key")
    return AuthMethod(scope, "sas")


def _check_policy_token(
    token: sas.SasToken, target: list[str], hub_host: str, policies: Iterable[Policy], who: str
) -> AuthMethod:
    policy = next((p for p in policies if p.name == token.key_name), None)
    if policy is None:
        raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"{who}: SAS token names unknown policy skn={token.key_name!r}")
    if DEVICE_CONNECT not in policy.permissions:
        raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"{who}: policy {policy.name!r} lacks the DeviceConnect permission")
    if not sas.covers(token.resource, hub_host, target):
        raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"{who}: SAS token audience {token.resource!r} does not cover the device")
    if not token.verify(policy.key):
        raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"{who}: SAS signature does not match policy {policy.name!r}")
    return AuthMethod("hub", "sas")
