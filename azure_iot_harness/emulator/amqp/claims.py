"""Claims-based security: what a connection's tokens allow. Sans-IO.

A token arrives as a `$cbs` put-token (or as SASL PLAIN's password) and is checked exactly as
the service REST API checks an Authorization header (`hub.service_auth.check`), except for its
audience: any `sr` on the hub's host is taken, and it then covers the nodes under its path
(compared case-insensitively, by whole segments). IoT Hub tokens sign with the base64-decoded
key, the Event Hubs SDKs with the key's text: both are accepted, since the Event Hubs-compatible
connection string carries the hub's own key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ...config import SERVICE_CONNECT, Policy
from ..hub.service_auth import check
from ..protocol import sas
from ..protocol.errors import hub_error


@dataclass(frozen=True)
class Claim:
    policy: str
    permissions: frozenset[str]
    path: tuple[str, ...]  # lower-case segments under the host; () covers the whole hub
    expiry: float  # seconds since the epoch; inf for a key given as such (SASL PLAIN)

    def covers(self, path: str, permission: str, now: float) -> bool:
        segments = tuple(s.lower() for s in path.split("/") if s)
        return permission in self.permissions and self.expiry > now and segments[: len(self.path)] == self.path


def _any_path_on_host(host: str, path: list[str], hub_host: str) -> bool:
    return host == hub_host.lower()


def token_claim(token: str, *, hub_host: str, policies: Iterable[Policy], now: float) -> Claim:
    """The claim a SAS token gives, or a 401 ServiceError saying why it gives none."""
    policies = tuple(policies)
    policy = check(
        token, hub_host=hub_host, policies=policies, permission=SERVICE_CONNECT, now=now, audience=_any_path_on_host, raw_key=True
    )
    parsed = sas.parse(token)
    resource = parsed.resource
    if resource.lower().startswith("sb://"):
        resource = resource[5:]
    _, path = sas.split_host(resource)
    return Claim(policy.name, policy.permissions, tuple(s.lower() for s in path), float(parsed.expiry))


def plain_claim(username: str, password: str, *, hub_host: str, policies: Iterable[Policy], now: float) -> Claim:
    """SASL PLAIN: `{policy}@sas.root.{hub}` with a SAS token, or a policy name with its key."""
    if password.startswith(sas.PREFIX):
        return token_claim(password, hub_host=hub_host, policies=policies, now=now)
    name = username.split("@", 1)[0]
    policy = next((p for p in policies if p.name == name), None)
    if policy is None or policy.key != password:
        raise hub_error("IotHubUnauthorizedAccess", f"SASL PLAIN: no policy {name!r} with that key")
    if SERVICE_CONNECT not in policy.permissions:
        raise hub_error("IotHubUnauthorizedAccess", f"policy {policy.name!r} lacks the {SERVICE_CONNECT} permission")
    return Claim(policy.name, policy.permissions, (), float("inf"))

