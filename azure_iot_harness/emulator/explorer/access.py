"""Who may use the explorer: loopback browsers freely, anyone else after signing in.

On a loopback address the page works at once (as Azurite does), but only under a loopback host
name: a page of another site that re-points its own name at 127.0.0.1 (DNS rebinding) is
refused. Bound beyond loopback, the page asks for the hub's `iothubowner` connection string, as
Azure IoT Explorer does, and keeps a random session cookie for the browser that gave it. Calls to
the API need the `X-Explorer` header, which a form of another site cannot send (its scripts
would need a CORS preflight the explorer never grants).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie

from ...config import Policy

COOKIE = "explorer-session"
API_HEADER = "x-explorer"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(address: str) -> bool:
    if address.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_connection_string(text: str) -> dict[str, str]:
    """`Key=Value;...` as Azure writes them (values may hold '=': base64 keys end with it)."""
    out = {}
    for part in text.strip().split(";"):
        name, sep, value = part.partition("=")
        if sep and name.strip():
            out[name.strip()] = value.strip()
    return out


@dataclass
class Access:
    owner: Policy  # the iothubowner policy: its connection string signs a browser in
    login_required: bool  # bound beyond loopback
    # Names the emulator is configured with (its host, its certificate's names), which a user may
    # point at loopback in /etc/hosts: accepted as Host too.
    host_names: frozenset[str] = frozenset()
    _sessions: set[str] = field(default_factory=set)

    def sign_in(self, connection_string: str) -> str | None:
        """A new session id for a correct iothubowner connection string, else None."""
        parts = parse_connection_string(connection_string)
        name, key = parts.get("SharedAccessKeyName", ""), parts.get("SharedAccessKey", "")
        if name != self.owner.name or not hmac.compare_digest(key.encode(), self.owner.key.encode()):
            return None
        session = secrets.token_urlsafe(32)
        self._sessions.add(session)
        return session

    def sign_out(self, session: str | None) -> None:
        self._sessions.discard(session or "")

    def signed_in(self, headers: dict[str, str]) -> bool:
        if not self.login_required:
            return True
        return session_of(headers) in self._sessions

    def host_allowed(self, headers: dict[str, str]) -> bool:
        """Beyond loopback any Host (the session guards it); on loopback only loopback names."""
        if self.login_required:
            return True
        host = headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return is_loopback(name) or name.lower() in self.host_names


def session_of(headers: dict[str, str]) -> str | None:
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except CookieError:  # a malformed header: no session
        return None
    morsel = cookie.get(COOKIE)
    return morsel.value if morsel is not None else None
