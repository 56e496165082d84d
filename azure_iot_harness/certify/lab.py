"""The emulator side of a certification run: the emulator certify starts (`OwnEmulator`) or one
already running, reached the same way in both cases — over its HTTPS API: the packet trace, the
fault book, the hub's and DPS's service REST, cloud-to-device sends.

Only public surfaces are used (`/_emulator/trace`, `/_emulator/faults`, Azure's service REST),
so a run against an emulator on another machine judges exactly what one in-process does.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

from ..config import WELL_KNOWN_DPS_POLICY, Config
from ..errors import HarnessError
from ..running.endpoints import connect_host, https_host_port, read_endpoints
from ..running.service import DPS_API_VERSION, HUB_API_VERSION, Answer, ServiceRest, emulator_service, emulator_tls
from .model import CheckError, Event


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _twin_path(device_id: str, module_id: str | None) -> str:
    return f"/twins/{_q(device_id)}" + (f"/modules/{_q(module_id)}" if module_id else "")


class Lab:
    """One emulator as certify drives it. `info` is its endpoints document (`info` verb)."""

    def __init__(self, info: dict[str, Any], *, emulator: Any = None) -> None:
        self.info = info
        self.emulator = emulator  # the in-process Emulator when certify started it, else None
        self.hub = emulator_service(info)
        self.dps = ServiceRest(
            connect_host(info), info["https"]["port"], https_host_port(info), WELL_KNOWN_DPS_POLICY.name,
            WELL_KNOWN_DPS_POLICY.key, emulator_tls(info),
        )
        self._fault_kinds: set[str] | None = None

    # ---- where -----------------------------------------------------------------------------

    @property
    def hub_host(self) -> str:
        return str(self.info["hubHostName"])

    @property
    def address(self) -> str:
        return connect_host(self.info)

    @property
    def mqtt_port(self) -> int:
        return int(self.info["mqtt"]["port"])

    @property
    def ca_file(self) -> str:
        return str(self.info["caFile"])

    @property
    def device_ca_file(self) -> str:
        """What a device is told to trust: both development roots (the current one and the
        rotated one, as devices had to trust Baltimore and DigiCert G2 at once) when the
        emulator has them, else its one root."""
        return str(self.info.get("caBundleFile") or self.info["caFile"])

    @property
    def id_scope(self) -> str:
        return str(self.info["dps"]["idScope"])

    @property
    def edge(self) -> dict[str, Any] | None:
        """The edge gateway (`serve --edge`): deviceId, host (the GatewayHostName), mqtt port; or None."""
        edge: dict[str, Any] | None = self.info.get("edge")
        return edge

    def edge_scope(self) -> str:
        """The edge device's `deviceScope`: a leaf with it in `parentScopes` is the edge's child."""
        edge = self.edge
        if edge is None:
            raise CheckError("this emulator runs without an edge gateway (serve --edge)")
        scope = self.call("GET", f"/devices/{_q(edge['deviceId'])}", api=HUB_API_VERSION).body().get("deviceScope")
        if not scope:
            raise CheckError(f"the edge device {edge['deviceId']} has no deviceScope")
        return str(scope)

    # ---- calls -----------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None, *, ok: tuple[int, ...] = (200,), dps: bool = False, **kw: Any) -> Answer:
        rest = self.dps if dps else self.hub
        try:
            answer = rest.call(method, path, body, **kw)
        except (OSError, http.client.HTTPException) as exc:
            raise CheckError(f"the emulator does not answer {method} {path}: {exc}") from None
        if answer.status not in ok:
            raise CheckError(f"{method} {path} answered {answer.status}: {answer.raw.decode(errors='replace')[:300]}")
        return answer

    # ---- the packet trace --------------------------------------------------------------------

    def trace(self, since: int | None = None) -> list[Event]:
        """Every event after `since` (all devices: TLS events precede the CONNECT that names one)."""
        path = "/_emulator/trace" + (f"?since={since}" if since is not None else "")
        answer = self.call("GET", path, timeout=30)
        events = [Event.from_json(json.loads(line)) for line in answer.raw.splitlines() if line.strip()]
        return [e for e in events if since is None or e.seq > since]

    def clear_trace(self) -> None:
        self.call("DELETE", "/_emulator/trace", ok=(200, 204))

    def capture_payloads(self, on: bool = True) -> bool:
        """Payload capture (so duplicates can be told apart): only for an emulator certify runs."""
        trace = getattr(self.emulator, "trace", None)
        if trace is None:
            return False
        trace.capture_payloads = on
        return True

    # ---- faults ------------------------------------------------------------------------------

    def add_fault(
        self, kind: str, *, device_id: str | None = None, count: int | None = None, duration: float | None = None, **params: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": kind, "params": params}
        if device_id is not None:
            body["deviceId"] = device_id
        if count is not None:
            body["count"] = count
        if duration is not None:
            body["durationSeconds"] = duration
        try:
            answer = self.hub.call("POST", "/_emulator/faults", body, timeout=30)
        except (OSError, http.client.HTTPException) as exc:
            raise CheckError(f"the emulator does not answer POST /_emulator/faults: {exc}") from None
        if answer.status == 404:
            raise CheckError("the emulator has no fault API (/_emulator/faults): it predates fault injection")
        if answer.status != 201:
            raise CheckError(f"the emulator refused fault {kind!r} {params}: {answer.status} {answer.raw.decode(errors='replace')[:300]}")
        doc: dict[str, Any] = json.loads(answer.raw)
        return doc

    def remove_fault(self, fault_id: str) -> None:
        self.call("DELETE", f"/_emulator/faults/{_q(fault_id)}", ok=(200, 204, 404))

    def clear_faults(self) -> None:
        self.call("DELETE", "/_emulator/faults", ok=(200, 204))

    # ---- identities ---------------------------------------------------------------------------

    def create_sas_device(self, device_id: str, *, parent_scope: str | None = None) -> str:
        """A SAS device with fresh keys (replacing any of that id); its primary key. With
        `parent_scope` (an edge device's `deviceScope`) a child of that edge device."""
        key = base64.b64encode(os.urandom(32)).decode()
        auth = {"type": "sas", "symmetricKey": {"primaryKey": key, "secondaryKey": base64.b64encode(os.urandom(32)).decode()}}
        self._put_device(device_id, auth, parent_scope)
        return key

    def create_ca_device(self, device_id: str, *, parent_scope: str | None = None) -> None:
        """An X.509 device authenticated by the development device CA (CN = device id)."""
        self._put_device(device_id, {"type": "certificateAuthority"}, parent_scope)

    def _put_device(self, device_id: str, auth: dict[str, Any], parent_scope: str | None = None) -> None:
        self.delete_device(device_id)
        doc = {"deviceId": device_id, "status": "enabled", "authentication": auth, "capabilities": {"iotEdge": False}}
        if parent_scope:
            doc.update(deviceScope=parent_scope, parentScopes=[parent_scope])
        self.call("PUT", f"/devices/{_q(device_id)}", doc, api=HUB_API_VERSION)

    def create_sas_module(self, device_id: str, module_id: str) -> str:
        """A SAS module identity of `device_id` with fresh keys (replacing any of that id); its primary key."""
        key = base64.b64encode(os.urandom(32)).decode()
        path = f"/devices/{_q(device_id)}/modules/{_q(module_id)}"
        self.call("DELETE", path, api=HUB_API_VERSION, ok=(200, 204, 404), headers={"If-Match": "*"})
        doc = {"deviceId": device_id, "moduleId": module_id,
               "authentication": {"type": "sas", "symmetricKey": {"primaryKey": key, "secondaryKey": base64.b64encode(os.urandom(32)).decode()}}}
        self.call("PUT", path, doc, api=HUB_API_VERSION, ok=(200, 201))
        return key

    def delete_device(self, device_id: str) -> None:
        self.call("DELETE", f"/devices/{_q(device_id)}", api=HUB_API_VERSION, ok=(200, 204, 404), headers={"If-Match": "*"})

    def create_enrollment(self, registration_id: str, *, key: str | None = None, certificate_pem: str | None = None) -> None:
        if certificate_pem is not None:
            att: dict[str, Any] = {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": certificate_pem}}}}
        else:
            att = {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}
        path = f"/enrollments/{_q(registration_id)}"
        self.call("DELETE", path, dps=True, api=DPS_API_VERSION, ok=(200, 204, 404), headers={"If-Match": "*"})
        doc = {"registrationId": registration_id, "attestation": att, "provisioningStatus": "enabled"}
        self.call("PUT", path, doc, dps=True, api=DPS_API_VERSION, ok=(200, 201))

    def issue_device_cert(self, common_name: str, folder: Path) -> tuple[Path, Path, Path]:
        """A certificate for `common_name` from the development device CA: (certificate, key,
        chain) files, the chain being the device CA certificate."""
        if self.emulator is not None:
            pki = self.emulator.pki
        else:
            from ..certs import DevPKI

            data = self.info.get("dataDir")
            if not data:
                raise HarnessError("X.509 needs the running emulator's data folder (its device CA); an in-memory emulator has none")
            pki = DevPKI.load_or_create(Path(data) / "pki", [self.hub_host, self.info.get("bind") or ""])
        cert = pki.issue_device_cert(common_name)
        cert_file, key_file = cert.write(folder)
        chain = folder / "chain.pem"
        chain.write_bytes(pki.device_ca_pem if isinstance(pki.device_ca_pem, bytes) else str(pki.device_ca_pem).encode())
        return Path(cert_file), Path(key_file), chain

    # ---- twins, methods, C2D ------------------------------------------------------------------

    def twin(self, device_id: str, module_id: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = self.call("GET", _twin_path(device_id, module_id), api=HUB_API_VERSION).body()
        return doc

    def patch_desired(self, device_id: str, desired: dict[str, Any], module_id: str | None = None) -> dict[str, Any]:
        answer = self.call(
            "PATCH", _twin_path(device_id, module_id), {"properties": {"desired": desired}}, api=HUB_API_VERSION,
            headers={"If-Match": "*"},
        )
        doc: dict[str, Any] = answer.body()
        return doc

    def invoke_method(self, device_id: str, name: str, payload: Any, timeout: int, module_id: str | None = None) -> Answer:
        """The hub's answer as it is: 200 with the device's status, or 404/504 when it did not answer.
        A device that has just connected gets a few seconds to subscribe to the method topic
        (the hub's connect timeout) before 404."""
        body = {"methodName": name, "payload": payload, "responseTimeoutInSeconds": timeout, "connectTimeoutInSeconds": METHOD_SUBSCRIBE_GRACE}
        return self.call(
            "POST", _twin_path(device_id, module_id) + "/methods", body, api=HUB_API_VERSION, ok=tuple(range(200, 600)), timeout=timeout + 30
        )

    def send_c2d(self, device_id: str, data: str, **options: Any) -> str:
        answer = self.call("POST", f"/_emulator/c2d/{_q(device_id)}", {"data": data, **options}, ok=(201,), timeout=30)
        return str(answer.body()["messageId"])


# Seconds a connected device may still take to subscribe to $iothub/methods/POST/# when a check
# calls a method (a device connected a moment ago is subscribing: not a failure).
METHOD_SUBSCRIBE_GRACE = 5


class OwnEmulator:
    """The emulator certify starts for a run, in this process: a fresh data folder unless one is
    named, the standard ports unless told otherwise (the Python device SDK reaches only 8883)."""

    def __init__(self, *, data_dir: str | None, bind: str, host: str | None, mqtt_port: int, https_port: int,
                 host_names: list[str] | None = None, edge_bind: str | None = None, edge_mqtt_port: int = 8883) -> None:
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="azure-iot-certify-")
        folder = Path(data_dir) if data_dir else Path(self._tmp.name) / "data"  # type: ignore[union-attr]  # set when no data_dir
        names = list(host_names or [])
        self.config = Config().with_overrides(
            data_dir=folder, in_memory=False, bind=bind, host=host or _default_host(bind), mqtt_port=mqtt_port,
            https_port=https_port, host_names=names, durability="normal",
            # Payloads kept, so that resent messages and duplicates can be told apart; a long
            # ring per connection (the run reads the trace as it goes, but a soak is long).
            trace_payloads=True, trace_per_connection=4096,
        )
        if edge_bind:  # the edge profile: an edgeHub on its own address (the GatewayHostName devices are given)
            self.config = self.config.with_overrides(edge=True, edge_bind=edge_bind, edge_mqtt_port=edge_mqtt_port)
        self.thread: Any = None

    def start(self) -> Lab:
        from ..emulator.app import EmulatorThread

        self.thread = EmulatorThread(self.config)
        emulator = self.thread.start()
        return Lab(emulator.info(), emulator=emulator)

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()
            self.thread = None
        if self._tmp is not None:
            self._tmp.cleanup()


def _default_host(bind: str) -> str:
    return "localhost" if bind in ("127.0.0.1", "0.0.0.0", "::", "") else bind


def running_lab(data_dir: str | None) -> Lab:
    """The emulator already running with that data folder (`serve`)."""
    from ..running.endpoints import data_dir as resolve

    return Lab(read_endpoints(resolve(data_dir)))


def wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> Any:
    """Poll `predicate` until it returns something truthy (returned) or `timeout` passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)
