"""Service-side authentication: a SAS token signed with a policy key, in the Authorization header
(REST) or put on the `$cbs` node (AMQP). Both go through `check`, so they refuse alike."""

from __future__ import annotations

from collections.abc import Callable, Iterable

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
    return check(header.strip(), hub_host=hub_host, policies=policies, permission=permission, now=now)


def _hub_only(host: str, path: list[str], hub_host: str) -> bool:
    return host == hub_host.lower() and not path


def check(
    text: str,
    *,
    hub_host: str,
    policies: Iterable[Policy],
    permission: str,
    now: float,
    audience: Callable[[str, list[str], str], bool] = _hub_only,
    raw_key: bool = False,
) -> Policy:
    """The policy whose token `text` grants `permission` at `now`, or a 401 ServiceError.

    `audience(host, path, hub_host)` judges the token's `sr` (REST: the hub itself);
    `raw_key` also accepts a signature made with the key's UTF-8 text instead of its decoded
    bytes, as the Event Hubs SDKs sign.
    """
    try:
        token = sas.parse(text)
    except SasTokenError as exc:
        raise hub_error("IotHubUnauthorizedAccess", str(exc)) from None
    if token.expired(now):
        raise hub_error("IotHubUnauthorizedAccess", f"SAS token expired at se={token.expiry}")
    if not token.key_name:
        raise hub_error("IotHubUnauthorizedAccess", "service tokens must name their policy (skn)")
    policy = next((p for p in policies if p.name == token.key_name), None)
    if policy is None:
        raise hub_error("IotHubUnauthorizedAccess", f"unknown policy skn={token.key_name!r}")
    host, path = sas.split_host(_without_scheme(token.resource))
    if not audience(host, path, hub_host):
        raise hub_error("IotHubUnauthorizedAccess", f"SAS token audience {token.resource!r} is not the hub {hub_host!r}")
    if not (token.verify(policy.key) or (raw_key and token.verify_raw(policy.key))):
        raise hub_error("IotHubUnauthorizedAccess", f"SAS signature does not match policy {policy.name!r}")
    if permission not in policy.permissions:
        raise hub_error("IotHubUnauthorizedAccess", f"policy {policy.name!r} lacks the {permission} permission")
    return policy


def _without_scheme(resource: str) -> str:
    """`sb://host/…` (the Event Hubs SDKs' audience) as `host/…`; the others are stripped by sas."""
    return resource[5:] if resource.lower().startswith("sb://") else resource
