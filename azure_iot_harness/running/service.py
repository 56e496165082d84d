"""The service side of a hub and its DPS over REST, as a back end calls it: HTTPS with a shared
access policy's SAS token (`ServiceRest`, for the emulator and real Azure alike), and the calls
the command line and the client programs make to the running emulator (identity lookup,
cloud-to-device send). Answers are handed back as they are: judging them is the caller's."""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ..config import WELL_KNOWN_POLICIES
from ..emulator.protocol import sas
from ..errors import ConfigError
from . import connection_strings
from .endpoints import connect_host, https_host_port
from .errors import CommandError

HUB_API_VERSION = "2021-04-12"
DPS_API_VERSION = "2021-10-01"
TOKEN_TTL = 3600


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    raw: bytes

    def body(self) -> Any:
        """The parsed JSON; the text when it is not JSON; None when empty."""
        if not self.raw:
            return None
        try:
            return json.loads(self.raw)
        except ValueError:
            return self.raw.decode(errors="replace")


class ServiceRest:
    """HTTPS to one service endpoint with a shared access policy's SAS token (audience: the
    connection string's HostName), renewed five minutes before it expires."""

    def __init__(self, address: str, port: int, audience: str, policy: str, key: str, ssl_context: ssl.SSLContext) -> None:
        self.address, self.port, self.audience = address, port, audience
        self._policy, self._key, self._ctx = policy, key, ssl_context
        self._token, self._expires = "", 0.0

    @classmethod
    def from_connection_string(cls, text: str, ssl_context: ssl.SSLContext) -> ServiceRest:
        """From a service connection string; the socket goes to its HostName (and port, else 443)."""
        cs = connection_strings.parse(text)
        missing = [k for k in ("HostName", "SharedAccessKeyName", "SharedAccessKey") if k not in cs]
        if missing:
            raise ConfigError(f"not a service connection string (no {', '.join(missing)}): {text!r}")
        host, _, port = cs["HostName"].partition(":")
        return cls(host, int(port or 443), cs["HostName"], cs["SharedAccessKeyName"], cs["SharedAccessKey"], ssl_context)

    def token(self, ttl: int = TOKEN_TTL) -> str:
        """A SAS token; the one of the default lifetime is kept and reused until near its end."""
        if ttl != TOKEN_TTL:
            return sas.generate(self.audience, self._key, key_name=self._policy, ttl=ttl)
        if time.time() > self._expires - 300:
            self._token = sas.generate(self.audience, self._key, key_name=self._policy, ttl=ttl)
            self._expires = time.time() + ttl
        return self._token

    def connection(self, timeout: float | None = 60.0) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.address, self.port, context=self._ctx, timeout=timeout)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        api: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Answer:
        """One request (`body` sent as JSON, `api` as api-version); OSError or HTTPException
        when the service cannot be reached or does not speak HTTP."""
        if api:
            path += f"{'&' if '?' in path else '?'}api-version={api}"
        data = json.dumps(body).encode() if body is not None else None
        sent = {"Authorization": self.token(), "Content-Type": "application/json; charset=utf-8", **(headers or {})}
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=data, headers=sent)
            resp = conn.getresponse()
            return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()


# ---- the running emulator's service API --------------------------------------------------------


def emulator_tls(info: dict[str, Any]) -> ssl.SSLContext:
    """A client context that trusts the running emulator's development CA."""
    try:
        return ssl.create_default_context(cafile=info["caFile"])
    except OSError as exc:  # ssl.SSLError is an OSError too
        raise CommandError(f"cannot load the emulator's CA file {info['caFile']}: {exc}") from None


def emulator_service(info: dict[str, Any], policy: str = "iothubowner") -> ServiceRest:
    """The running emulator's HTTPS endpoint with one of its well-known policies."""
    pol = next(p for p in WELL_KNOWN_POLICIES if p.name == policy)
    return ServiceRest(connect_host(info), info["https"]["port"], https_host_port(info), pol.name, pol.key, emulator_tls(info))


def service_token(info: dict[str, Any], policy: str = "iothubowner", ttl: int = TOKEN_TTL) -> str:
    """A service token for the running emulator (audience: its HTTPS `host[:port]`)."""
    pol = next(p for p in WELL_KNOWN_POLICIES if p.name == policy)
    return sas.generate(https_host_port(info), pol.key, key_name=pol.name, ttl=ttl)


def https_connection(info: dict[str, Any], timeout: float | None = 30.0) -> http.client.HTTPSConnection:
    """A connection to the emulator's HTTPS port that verifies against its development CA."""
    return http.client.HTTPSConnection(connect_host(info), info["https"]["port"], context=emulator_tls(info), timeout=timeout)


def unreachable(info: dict[str, Any], exc: BaseException) -> CommandError:
    return CommandError(f"cannot reach the emulator at {connect_host(info)}:{info['https']['port']}: {exc}")


def _call(info: dict[str, Any], method: str, path: str, body: Any = None, **kw: Any) -> Answer:
    try:
        return emulator_service(info).call(method, path, body, **kw)
    except (OSError, http.client.HTTPException) as exc:
        raise unreachable(info, exc) from None


def get_identity(info: dict[str, Any], device: str, module: str | None) -> dict[str, Any]:
    """The registry's JSON of a device or module (GET /devices/{id}[/modules/{mid}])."""
    path = "/devices/" + urllib.parse.quote(device, safe="")
    if module:
        path += "/modules/" + urllib.parse.quote(module, safe="")
    answer = _call(info, "GET", path, api=HUB_API_VERSION, timeout=30)
    # A plain 404 (no IoT Hub error code) means the route itself is missing, not the identity.
    code = answer.headers.get("iothub-errorcode")
    if answer.status == 404 and code == "DeviceNotFound":
        raise CommandError(f"the hub has no device {device}")
    if answer.status == 404 and code == "ModuleNotFound":
        raise CommandError(f"the hub has no module {device}/{module}")
    if answer.status != 200:
        raise CommandError(f"GET {path} answered {answer.status}: {answer.raw.decode(errors='replace').strip()}")
    try:
        doc: dict[str, Any] = json.loads(answer.raw)
    except ValueError:
        raise CommandError(f"GET {path} answered something that is not JSON") from None
    return doc


def send_c2d(info: dict[str, Any], device: str, message: dict[str, Any]) -> str:
    """Queue a cloud-to-device message (POST /_emulator/c2d/{deviceId}: what the AMQP-only
    service SDK call does in Azure); its message id."""
    answer = _call(info, "POST", "/_emulator/c2d/" + urllib.parse.quote(device, safe=""), message, timeout=30)
    if answer.status != 201:
        try:
            text = json.loads(answer.raw)["Message"].split(";", 1)[-1]
        except (ValueError, KeyError, TypeError):
            text = answer.raw.decode(errors="replace").strip()
        raise CommandError(f"the hub refused the message ({answer.status}): {text}")
    return str(json.loads(answer.raw)["messageId"])


def emulator_api(info: dict[str, Any], method: str, path: str, body: Any = None, *, expect: int = 200) -> Any:
    """One call to the emulator's own API (`/_emulator/…`): the parsed answer, or CommandError
    with the emulator's message when the status is not `expect`."""
    answer = _call(info, method, path, body, timeout=30)
    if answer.status != expect:
        try:
            text = json.loads(answer.raw)["Message"].split(";", 1)[-1]
        except (ValueError, KeyError, TypeError):
            text = answer.raw.decode(errors="replace").strip()
        raise CommandError(f"{method} {path.split('?')[0]} answered {answer.status}: {text}")
    return answer.body()
