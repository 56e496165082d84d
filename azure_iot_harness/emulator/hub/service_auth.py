"""Service-side authentication: a SAS token in the Authorization header, signed with a policy key."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request

from ...config import Policy
from ...errors import SasTokenError
from ..protocol import sas
from ..protocol.errors import hub_error


def require(
    request: Request, *, hub_host: str, policies: Iterable[Policy], permission: str, now: float, header: str | None = None
) -> Policy:
    """The policy whose token authorises this request for `permission` at `now` (seconds since
    the epoch), or a 401 ServiceError. `header`: the token, when not the Authorization header as sent."""
    header = header if header is not None else request.headers.get("authorization")
    if not header:
        raise hub_error("IotHubUnauthorizedAccess", "no Authorization header (a service SAS token is required)")
    try:
        token = sas.parse(header.strip())
    except SasTokenError as exc:
        raise hub_error("IotHubUnauthorizedAccess", str(exc)) from None
    if token.expired(now):
        raise hub_error("IotHubUnauthorizedAccess", f"SAS token expired at se={token.expiry}")
    if not token.key_name:
        raise hub_error("IotHubUnauthorizedAccess", "service tokens must name their policy (skn)")
    policy = next((p for p in policies if p.name == token.key_name), None)
    if policy is None:
        raise hub_error("IotHubUnauthorizedAccess", f"unknown policy skn={token.key_name!r}")
    host, path = sas.split_host(token.resource)
    if host != hub_host.lower() or path:
        raise hub_error("IotHubUnauthorizedAccess", f"SAS token audience {token.resource!r} is not the hub {hub_host!r}")
    if not token.verify(policy.key):
        raise hub_error("IotHubUnauthorizedAccess", f"SAS signature does not match policy {policy.name!r}")
    if permission not in policy.permissions:
        raise hub_error("IotHubUnauthorizedAccess", f"policy {policy.name!r} lacks the {permission} permission")
    return policy
