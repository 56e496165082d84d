"""CA certificates of the running emulator's hub or DPS, through the management plane's routes
(`…/Microsoft.Devices/IotHubs/{hub}/certificates/{name}`, `…/provisioningServices/{dps}/…`), as
`az iot hub certificate` calls them: what `azure-iot-harness ca upload|verification-code|verify|
list|delete` do."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from typing import Any

from ..config import WELL_KNOWN_DPS_POLICY, WELL_KNOWN_POLICIES
from .endpoints import connect_host, https_host_port
from .errors import CommandError
from .service import Answer, ServiceRest, emulator_tls, unreachable

API_VERSION = "2023-06-30"
DPS_API_VERSION = "2022-02-05"
# Resource Manager's path needs a subscription and a resource group; the emulator takes any.
_PARENT = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/azure-iot-harness/providers/Microsoft.Devices"


class CaCertificatesApi:
    def __init__(self, info: dict[str, Any], *, dps: bool = False) -> None:
        self.info, self.dps = info, dps
        policy = WELL_KNOWN_DPS_POLICY if dps else next(p for p in WELL_KNOWN_POLICIES if p.name == "iothubowner")
        self.rest = ServiceRest(connect_host(info), info["https"]["port"], https_host_port(info), policy.name, policy.key, emulator_tls(info))
        kind = "provisioningServices" if dps else "IotHubs"
        self.base = f"{_PARENT}/{kind}/{info['hubHostName'].split('.', 1)[0]}/certificates"
        self.api = DPS_API_VERSION if dps else API_VERSION

    def _call(self, method: str, name: str = "", action: str = "", body: Any = None, if_match: str | None = None) -> Answer:
        path = self.base + ("/" + urllib.parse.quote(name, safe="") if name else "") + (f"/{action}" if action else "")
        headers = {"If-Match": if_match} if if_match else None
        try:
            answer = self.rest.call(method, path, body, api=self.api, headers=headers, timeout=30)
        except (OSError, http.client.HTTPException) as exc:
            raise unreachable(self.info, exc) from None
        if answer.status >= 300:
            body = answer.body()
            message = body.get("message") if isinstance(body, dict) else body
            raise CommandError(f"{method} certificate {name or ''}: {answer.status} {message}".replace("  ", " "))
        return answer

    def list(self) -> list[dict]:
        return list(self._call("GET").body()["value"])

    def get(self, name: str) -> dict:
        return dict(self._call("GET", name).body())

    def upload(self, name: str, pem: str, *, verified: bool) -> dict:
        return dict(self._call("PUT", name, body={"properties": {"certificate": pem, "isVerified": verified}}).body())

    def verification_code(self, name: str) -> str:
        etag = self.get(name)["etag"]
        return str(self._call("POST", name, "generateVerificationCode", if_match=etag).body()["properties"]["verificationCode"])

    def verify(self, name: str, pem: str) -> dict:
        etag = self.get(name)["etag"]
        return dict(self._call("POST", name, "verify", body={"certificate": pem}, if_match=etag).body())

    def delete(self, name: str) -> None:
        etag = self.get(name)["etag"]
        self._call("DELETE", name, if_match=etag)


def show(description: dict) -> str:
    return json.dumps(description, indent=2)
