"""`Emulator`: builds every part from one Config, starts and stops them, tells where they are.

It is the only module that knows every part: the services (hub, DPS, edge) get their settings,
the store, the clock and what they need of each other; the HTTPS routes get small contexts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from ..certs import DevPKI
from ..certs.server_faults import CA_BUNDLE_FILE, FaultCertificates, RotatedRoot, write_bundle
from ..config import (
    ENDPOINTS_FILE,
    WELL_KNOWN_SYMMETRIC_GROUP,
    WELL_KNOWN_X509_GROUP,
    AmqpSettings,
    Config,
    DpsSettings,
    EdgeSettings,
    HubSettings,
    Policy,
)
from ..errors import ConfigError, FaultError, HarnessError, ServiceError
from .amqp import AmqpService
from .amqp.consumer_groups import ConsumerGroups
from .ca_certificates import CaCertificates, ca_entries
from .certification import CertificationReports
from .clock import SYSTEM_CLOCK, Clock
from .dps.context import DpsContext
from .dps.dps import Dps
from .edge.edge import Edge, HubLink
from .emulator_api import ApiContext
from .explorer import ExplorerContext, build_explorer
from .explorer.access import is_loopback
from .faults import Fault, FaultBook
from .frontdoor import FrontDoor
from .https_server import ALPN, HttpsServer
from .hub.feedback import Feedback
from .hub.hub import Hub
from .hub.registry import Registry
from .hub.route_sources import RouteSources, Sources
from .loops import loop_factory, loop_name
from .management_rest import ManagementContext
from .mqtt.listener import MqttListener
from .protocol import sas
from .store import Store
from .tls import ServerCertificate, ServerContext, client_chain, server_context
from .tls.faults import TlsFaults
from .trace import Trace
from .web import WebContext, build_app

log = logging.getLogger("azure_iot_harness")


class Emulator:
    """IoT Hub's device (MQTT/TLS) and service (HTTPS) endpoints, in the running event loop.

    `async with Emulator(Config(in_memory=True, mqtt_port=0, https_port=0)) as emu:` for tests;
    `EmulatorThread` runs one on its own thread for synchronous code.
    """

    def __init__(self, config: Config | None = None, *, clock: Clock = SYSTEM_CLOCK, **overrides: Any) -> None:
        """`clock`: what the services read the time from (a test may give its own)."""
        self.config = (config or Config()).with_overrides(**overrides)
        self.clock = clock
        self._tmp: tempfile.TemporaryDirectory | None = None  # in-memory emulators' CA file
        self.pki: DevPKI
        self.store: Store
        self.registry: Registry
        self.hub: Hub
        self.dps: Dps
        self.edge: Edge | None = None
        cfg = self.config
        # The packet trace and the faults live as long as the Emulator (reset() clears them).
        self.trace = Trace(
            enabled=cfg.trace,
            per_connection=cfg.trace_per_connection,
            max_events=cfg.trace_max_events,
            capture_payloads=cfg.trace_payloads,
        )
        self.faults = FaultBook()
        self.faults.azure_properties = cfg.azure_fault_properties
        self._other_hosts: dict[str, MqttListener] = {}  # add_hub_host's listeners
        self._register_fault_actions()
        self.front_door: FrontDoor
        self.mqtt: MqttListener
        self.https: HttpsServer
        self.rotated_root: RotatedRoot | None = None  # the second development root (TLS faults)
        self.tls_faults: TlsFaults
        self.explorer: HttpsServer | None = None  # the explorer page (Config.explorer)
        self.feedback: Feedback
        self.amqp: AmqpService
        self.certification: CertificationReports  # certify's reports (/_emulator/certification)
        self._started = False

    # ---- life cycle ---------------------------------------------------------------------

    async def start(self) -> Emulator:
        cfg = self.config
        self.faults.bind(asyncio.get_running_loop())
        names = [cfg.host, cfg.bind, *cfg.host_names]
        # The development PKI: a fresh one per in-memory emulator, else the data folder's.
        if cfg.in_memory:
            if self._tmp is None:  # reset() keeps the PKI, so clients keep trusting the CA file
                self.pki = DevPKI.generate(names)
                self._tmp = tempfile.TemporaryDirectory(prefix="azure-iot-harness-")
                self.pki.write_ca(self._tmp.name)
        else:
            self.pki = DevPKI.load_or_create(cfg.data_dir / "pki", names)
            self.rotated_root = RotatedRoot.load_or_create(cfg.data_dir / "pki")
        # The rotated root (kept across reset() too) and the bundle of both roots next to ca.pem.
        self.rotated_root = self.rotated_root or RotatedRoot.generate()
        write_bundle(self.ca_file.parent, self.server_roots())
        # The store; the services below add their tables to it before it opens.
        self.store = Store(None) if cfg.in_memory else Store(cfg.data_dir / "state.sqlite3", durability=cfg.durability)
        # Certification reports certify posts after its runs (the explorer shows them).
        self.certification = CertificationReports(self.store)
        # IoT Hub: identity registry, twins, C2D queues, sessions, direct methods.
        self.hub = Hub(HubSettings.of(cfg), self.store, self.clock, device_ca=self.pki.device_ca_cert, faults=self.faults)
        self.registry = self.hub.registry
        # DPS, assigning devices to that hub through its registry and twins.
        self.dps = Dps(
            DpsSettings.of(cfg),
            self.store,
            self.clock,
            registry=self.hub.registry,
            twins=self.hub.twins,
            device_ca_pem=self.pki.device_ca_pem,
            faults=self.faults,
        )
        # edgeHub (serve --edge), which knows the hub as a HubLink: its listener and registry.
        self.edge = (
            Edge(EdgeSettings.of(cfg), self.store, self.clock, hub=self._hub_link(), pki=self.pki, trace=self.trace, faults=self.faults)
            if cfg.edge
            else None
        )
        # Routing sources besides telemetry (twin changes, lifecycle, connection state), as routes would send them.
        self.route_sources = RouteSources(
            Sources(cfg.route_twin_change_events, cfg.route_device_lifecycle_events, cfg.route_device_connection_state_events),
            hub_name=cfg.hub_name,
            store=self.store,
            registry=self.hub.registry,
            twins=self.hub.twins,
            clock=self.clock,
        )
        # C2D delivery feedback, from the hub's C2D queues.
        self.feedback = Feedback(self.store, self.hub.c2d, self.clock, batch_seconds=cfg.c2d_feedback_batch_seconds)
        # The Event Hubs-compatible endpoint's consumer groups (settings, and those created since).
        self.consumer_groups = ConsumerGroups(self.store, self.clock, cfg.eventhub_consumer_groups)
        # The store opens; then each service loads (and seeds) its state.
        await self.store.start()
        try:
            await self.hub.start()
            await self.dps.start()
            # CA certificates the settings trust from the start (uploaded as verified).
            await self._upload_configured_cas()
            self.route_sources.start()
            await self.feedback.start()
            # One MQTT/TLS listener for hub and DPS, told apart by the CONNECT username.
            self.front_door = FrontDoor(self.hub, self.dps)
            device_tls = server_context(self.pki.server_chain_pem, self.pki.server_key_pem)  # MQTT's and AMQP's
            self.mqtt = MqttListener(
                host=cfg.bind,
                port=cfg.mqtt_port,
                tls=device_tls,
                router=self.front_door,
                max_idle=cfg.max_idle_seconds,
                connect_timeout=cfg.connect_timeout,
                server_certificate=ServerCertificate(tuple(self.pki.server_names), str(self.ca_file)),
                trace=self.trace,
                faults=self.faults,
            )
            await _bind("MQTT", cfg.bind, cfg.mqtt_port, self.mqtt.start)
            # Bad server certificates served on the device endpoint on request (faults).
            self.tls_faults = TlsFaults(self.mqtt.listener, FaultCertificates(self.pki.root, self.rotated_root, self.pki.server_names), self.faults)

            # AMQP for back ends: the Event Hubs-compatible endpoint, C2D sending and feedback.
            self.amqp = self._amqp_service(device_tls)
            try:
                await _bind("AMQP", cfg.bind, self.amqp.settings.port, self.amqp.start)
            except BaseException:
                await self.mqtt.stop()
                raise
            # One HTTPS listener for every REST surface and MQTT over WebSocket. DPS's REST API
            # attests X.509 devices by their TLS client certificate.
            https_tls = server_context(self.pki.server_chain_pem, self.pki.server_key_pem, alpn=ALPN)
            web_app = build_app(self._web_context())
            self.https = HttpsServer(web_app, host=cfg.bind, port=cfg.https_port, tls=https_tls)
            try:
                await _bind("HTTPS", cfg.bind, cfg.https_port, self.https.start)
                # The explorer page on plain HTTP, calling that same app in-process.
                if cfg.explorer:
                    explorer_app = build_explorer(self._explorer_context(web_app))
                    self.explorer = HttpsServer(explorer_app, host=self.explorer_bind, port=cfg.explorer_port, tls=None)
                    await _bind("explorer", self.explorer_bind, cfg.explorer_port, self.explorer.start)
                # The edge last: its upstream connects to the hub's MQTT listener.
                if self.edge is not None:
                    await self.edge.start()
            except BaseException:
                await self.mqtt.stop()
                await self.amqp.stop()
                await self.https.stop()
                await self._stop_explorer()
                raise
        except BaseException:
            await self.feedback.stop()
            await self.store.close()
            raise
        self._started = True
        if not cfg.in_memory:
            self._write_endpoints()
        log.info("started on the %s event loop", loop_name(asyncio.get_running_loop()))
        return self

    async def _upload_configured_cas(self) -> None:
        for entries, cas in ((self.config.ca_certificates, self.hub.cas), (self.config.dps_ca_certificates, self.dps.cas)):
            for name, path in ca_entries(entries):
                try:
                    text = path.read_text()
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError(f"cannot read CA certificate {name!r} from {path}: {exc}") from None
                try:
                    await cas.put(name, text, verified=True)
                except ServiceError as exc:
                    raise ConfigError(f"CA certificate {name!r} from {path}: {exc.message}") from None

    def _amqp_service(self, tls: ServerContext) -> AmqpService:
        def https_port() -> int:
            return self.https.port if hasattr(self, "https") and self.https.running else self.config.https_port

        return AmqpService(
            AmqpSettings.of(self.config),
            self.store,
            self.clock,
            c2d=self.hub.c2d,
            feedback=self.feedback,
            consumer_groups=self.consumer_groups,
            tls=tls,
            server_certificate=ServerCertificate(tuple(self.pki.server_names), str(self.ca_file)),
            websocket_port=https_port,
        )

    def _hub_link(self) -> HubLink:
        def mqtt_port() -> int:
            return self.mqtt.port if self.mqtt.running else self.mqtt.requested_port

        return HubLink(
            host=self.config.host,
            address=self.config.bind,
            port=mqtt_port,
            registry=self.hub.registry,
            policies=self.hub.policies,
            trust=self.hub.cas.trust,
        )

    def _web_context(self) -> WebContext:
        hub = self.hub.context()
        return WebContext(
            hub=hub,
            dps=DpsContext(self.dps, client_chain=client_chain),
            api=ApiContext(
                hub,
                self.store,
                self.edge.router if self.edge is not None else None,
                self.edge.status if self.edge is not None else None,
            ),
            mqtt_router=self.front_door,
            feedback=self.feedback,
            certification=self.certification,
            amqp_websocket=self.amqp.serve_websocket,
            max_idle_seconds=self.config.max_idle_seconds,
            connect_timeout=self.config.connect_timeout,
            ca_pem=self.pki.root_pem,
            faults=self.faults,
            trace=self.trace,
            management=ManagementContext(self.config.hub_name, hub, self.hub.cas, self.dps, self.dps.cas, self.consumer_groups),
        )

    def _explorer_context(self, web_app: Any) -> ExplorerContext:
        owner = next(p for p in self.policies if p.name == "iothubowner")
        return ExplorerContext(
            api=web_app,
            hub_host=self.host,
            dps_id_scope=self.config.dps_id_scope,
            hub_token=self.service_token,
            dps_token=self.dps_service_token,
            owner=owner,
            login_required=not is_loopback(self.explorer_bind),
            edge=self.edge is not None,
            host_names=(self.host, *self.config.host_names),
        )

    async def _stop_explorer(self) -> None:
        if self.explorer is not None:
            await self.explorer.stop()
            self.explorer = None

    async def reset(self) -> None:
        """Back to a fresh state, on the same ports and with the same CA: every connection is
        closed, every identity, twin, message, enrollment and registration not well-known is
        gone. For in-memory emulators (the pytest plugin resets between tests)."""
        if not self.config.in_memory:
            raise HarnessError("reset() is for in-memory emulators; a data folder keeps its state")
        ports = {"mqtt_port": self.mqtt_port, "https_port": self.https_port, "amqp_port": self.amqp_port, "amqp_plain_port": self.amqp_plain_port}
        if self.edge is not None:
            ports.update(edge_mqtt_port=self.edge.mqtt_port, edge_workload_port=self.edge.workload.port)
        if self.explorer is not None:
            ports["explorer_port"] = self.explorer.listener.port
        await self._shutdown()
        self.faults.clear()
        self.trace.clear()
        requested = {k: getattr(self.config, k) for k in ports}
        self.config = self.config.with_overrides(**ports)
        try:
            await self.start()
        finally:
            self.config = self.config.with_overrides(**requested)

    async def stop(self) -> None:
        await self._shutdown()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def _shutdown(self) -> None:
        if not self._started:
            return
        self._started = False
        if not self.config.in_memory:
            (self.config.data_dir / ENDPOINTS_FILE).unlink(missing_ok=True)
        if self.edge is not None:
            await self.edge.stop()
        await self.tls_faults.stop()
        for listener in self._other_hosts.values():
            await listener.stop()
        self._other_hosts.clear()
        await self.mqtt.stop()
        await self.amqp.stop()
        await self.https.stop()
        await self._stop_explorer()
        await self.feedback.stop()
        await self.dps.stop()
        await self.hub.stop()
        await self.store.close()

    async def suspend_hub(self) -> None:
        """Drop the hub's MQTT connections and turn new ones away (reset), as in an outage (tests
        of the edge's store-and-forward use this); the port stays the hub's, and resume_hub()
        serves it again."""
        if not self.mqtt.running:
            return
        port = self.mqtt.port
        await self.mqtt.stop(hold_port=True)
        self.mqtt.requested_port = port

    async def resume_hub(self) -> None:
        if not self.mqtt.running:
            await self.mqtt.start()

    def _register_fault_actions(self) -> None:
        """What the faults that act on the whole emulator do (the book finds connections itself)."""

        async def suspend_hub(fault: Fault) -> None:
            await self.suspend_hub()
            if fault.duration is not None:
                asyncio.get_running_loop().call_later(fault.duration, lambda: asyncio.ensure_future(self.resume_hub()))

        async def resume_hub(fault: Fault) -> None:
            await self.resume_hub()

        async def other_hub(fault: Fault) -> None:
            await self.add_hub_host(fault.params["hostName"])

        self.faults.on_added("hub-suspend", suspend_hub)
        self.faults.on_added("hub-resume", resume_hub)
        def upstream(suspend: bool) -> Any:
            def act(fault: Fault) -> None:
                if self.edge is None:
                    raise FaultError(f"{fault.kind}: this emulator runs without an edge (serve --edge)")
                if suspend:
                    self.edge.upstream.suspend()
                    if fault.duration is not None:
                        asyncio.get_running_loop().call_later(fault.duration, self.edge.upstream.resume)
                else:
                    self.edge.upstream.resume()

            return act

        self.faults.on_added("dps-assign-hub", other_hub)
        self.faults.on_added("edge-upstream-suspend", upstream(True))
        self.faults.on_added("edge-upstream-resume", upstream(False))

    async def add_hub_host(self, name: str) -> tuple[str, int] | None:
        """Let devices reach the hub under another host name (DPS's "another hub" for a
        dps-assign-hub fault). When the name is a loopback address other than the bind address,
        the hub also listens there, on the same MQTT port, with a certificate for it; returns
        that (address, port), else None (the name must then resolve to the bind address)."""
        self.hub.host_aliases.add(name.lower())
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return None
        if not address.is_loopback or name == self.config.bind:
            return None
        listener = self._other_hosts.get(name)
        if listener is None:
            chain, key = self.pki.issue_server_chain([name])
            listener = MqttListener(
                host=name,
                port=self.mqtt_port,
                tls=server_context(chain, key),
                router=self.front_door,
                max_idle=self.config.max_idle_seconds,
                connect_timeout=self.config.connect_timeout,
                trace=self.trace,
                faults=self.faults,
            )
            await _bind("MQTT", name, self.mqtt_port, listener.start)
            self._other_hosts[name] = listener
            log.info("the hub also answers as %s on mqtts://%s:%d", name, name, listener.port)
        return name, listener.port

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- where things are ---------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The hub's shared access policies."""
        return HubSettings.of(self.config).policies

    @property
    def mqtt_port(self) -> int:
        return self.mqtt.port

    @property
    def https_port(self) -> int:
        return self.https.port

    @property
    def explorer_bind(self) -> str:
        return self.config.explorer_bind or self.config.bind

    @property
    def explorer_url(self) -> str | None:
        """The explorer page's address (None when Config.explorer is off)."""
        if self.explorer is None:
            return None
        host = self.explorer_bind
        if host in ("0.0.0.0", "::", ""):  # every address: name the hub's host
            host = self.host
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.explorer.listener.port}/"

    @property
    def amqp_port(self) -> int:
        """AMQPS (Azure's 5671 by default)."""
        return self.amqp.port

    @property
    def amqp_plain_port(self) -> int:
        """Plain AMQP, for connection strings with UseDevelopmentEmulator=true."""
        return self.amqp.plain_port

    @property
    def eventhub_name(self) -> str:
        return self.amqp.settings.eventhub_name

    def eventhub_connection_string(self, *, policy: str = "service", emulator: bool = False) -> str:
        """The Event Hubs-compatible endpoint's connection string, as the portal shows it
        (`Endpoint=sb://host/`, AMQPS on 5671); `emulator`: the plain-TCP form with
        `UseDevelopmentEmulator=true`, which the Event Hubs SDKs accept with any port."""
        pol = next((p for p in self.policies if p.name == policy), None)
        if pol is None:
            raise HarnessError(f"no shared access policy named {policy!r}")
        tail = f"SharedAccessKeyName={pol.name};SharedAccessKey={pol.key};EntityPath={self.eventhub_name}"
        if emulator:
            return f"Endpoint=sb://{self.host}:{self.amqp_plain_port}/;{tail};UseDevelopmentEmulator=true"
        return f"Endpoint=sb://{self._host_port(self.amqp_port, 5671)}/;{tail}"

    @property
    def ca_file(self) -> Path:
        folder = Path(self._tmp.name) if self._tmp is not None else self.config.data_dir / "pki"
        return folder / "ca.pem"

    @property
    def ca_bundle_file(self) -> Path:
        """`ca-bundle.pem` next to `ca_file`: the development root and the rotated root, for
        clients that must trust both (the `rotated-root` TLS fault)."""
        return self.ca_file.parent / CA_BUNDLE_FILE

    def server_roots(self) -> list[bytes]:
        """The PEMs of the development root (`ca_file`) and of the rotated root, in that order."""
        assert self.rotated_root is not None, "start() first"
        return [self.pki.root_pem, self.rotated_root.pem]

    def _host_port(self, port: int, standard: int) -> str:
        return self.host if port == standard else f"{self.host}:{port}"

    def info(self) -> dict:
        """What `azure-iot-harness info` prints and the endpoints file holds."""
        return {
            "hubHostName": self.host,
            "bind": self.config.bind,
            "mqtt": {"host": self.host, "port": self.mqtt_port},
            "https": {"host": self.host, "port": self.https_port, "url": f"https://{self._host_port(self.https_port, 443)}"},
            "amqp": {"host": self.host, "port": self.amqp_port, "plainPort": self.amqp_plain_port},
            "eventHub": {
                "name": self.eventhub_name,
                "partitions": self.amqp.events.partition_ids,
                "connectionString": self.eventhub_connection_string(),
                "emulatorConnectionString": self.eventhub_connection_string(emulator=True),
            },
            "dps": {
                "host": self.host,
                "idScope": self.config.dps_id_scope,
                "url": f"https://{self._host_port(self.https_port, 443)}",
            },
            "caFile": str(self.ca_file),
            "caBundleFile": str(self.ca_bundle_file),
            "dataDir": None if self.config.in_memory else str(self.config.data_dir),
            "pid": os.getpid(),
            "connectionStrings": self.well_known_connection_strings(),
            "wellKnownIdentities": self.well_known_identities(),
            "edge": self.edge.info() if self.edge is not None else None,
            "explorer": (
                {"url": self.explorer_url, "signIn": not is_loopback(self.explorer_bind)} if self.explorer is not None else None
            ),
        }

    def well_known_identities(self) -> dict:
        from ..config import WELL_KNOWN_CA_DEVICE, WELL_KNOWN_MODULE, WELL_KNOWN_SAS_DEVICE

        def identity(device: str, module: str | None = None) -> dict:
            doc = self.registry.get(device, module) or {}
            auth = doc.get("authentication", {})
            out = {"deviceId": device, "authentication": auth.get("type")}
            if module:
                out["moduleId"] = module
            if auth.get("type") == "sas":
                out.update(auth["symmetricKey"])
            return out

        return {
            "policies": [{"name": p.name, "key": p.key, "permissions": sorted(p.permissions)} for p in self.policies],
            "devices": [identity(WELL_KNOWN_SAS_DEVICE), identity(WELL_KNOWN_CA_DEVICE)],
            "modules": [identity(WELL_KNOWN_SAS_DEVICE, WELL_KNOWN_MODULE)],
            "dps": self.dps_identities(),
        }

    def dps_identities(self) -> dict:
        groups = []
        for group in self.dps.list_enrollments("group"):
            if group["enrollmentGroupId"] not in (WELL_KNOWN_SYMMETRIC_GROUP, WELL_KNOWN_X509_GROUP):
                continue
            attestation = group["attestation"]
            out = {"enrollmentGroupId": group["enrollmentGroupId"], "attestation": attestation["type"]}
            out.update(attestation.get("symmetricKey") or {})
            groups.append(out)
        return {
            "idScope": self.config.dps_id_scope,
            "policies": [{"name": p.name, "key": p.key, "permissions": sorted(p.permissions)} for p in self.dps.policies],
            "enrollmentGroups": groups,
        }

    def well_known_connection_strings(self) -> dict[str, str]:
        from ..config import WELL_KNOWN_CA_DEVICE, WELL_KNOWN_LEAF_DEVICE, WELL_KNOWN_MODULE, WELL_KNOWN_SAS_DEVICE

        return {
            "service": self.connection_string(policy="iothubowner"),
            "device": self.connection_string(device=WELL_KNOWN_SAS_DEVICE),
            "module": self.connection_string(device=WELL_KNOWN_SAS_DEVICE, module=WELL_KNOWN_MODULE),
            "x509Device": self.connection_string(device=WELL_KNOWN_CA_DEVICE),
            "dpsService": self.dps_connection_string(),
            **(
                {"leafDevice": self.connection_string(device=WELL_KNOWN_LEAF_DEVICE) + f";GatewayHostName={self.edge.host}"}
                if self.edge is not None
                else {}
            ),
        }

    def dps_connection_string(self) -> str:
        """The DPS service connection string (HostName carries the HTTPS port when it is not 443)."""
        pol = self.dps.policies[0]
        return f"HostName={self._host_port(self.https_port, 443)};SharedAccessKeyName={pol.name};SharedAccessKey={pol.key}"

    def dps_service_token(self, ttl: int = 3600) -> str:
        pol = self.dps.policies[0]
        return sas.generate(self._host_port(self.https_port, 443), pol.key, key_name=pol.name, ttl=ttl)

    def connection_string(self, *, device: str | None = None, module: str | None = None, policy: str | None = None) -> str:
        """A connection string exactly in Azure's format (Azure's keys only).

        The service string carries the HTTPS port when it is not 443 (the service SDK accepts
        host:port); device strings never do, since device SDKs can only use 8883.
        """
        if device is None:
            policy = policy or "iothubowner"
            pol = next((p for p in self.policies if p.name == policy), None)
            if pol is None:
                raise HarnessError(f"no shared access policy named {policy!r}")
            return f"HostName={self._host_port(self.https_port, 443)};SharedAccessKeyName={pol.name};SharedAccessKey={pol.key}"
        doc = self.registry.get(device, module)
        if doc is None:
            raise HarnessError(f"no identity {device}{'/' + module if module else ''} in the registry")
        out = f"HostName={self.host};DeviceId={device}"
        if module:
            out += f";ModuleId={module}"
        auth = doc["authentication"]
        if auth["type"] == "sas":
            out += f";SharedAccessKey={auth['symmetricKey']['primaryKey']}"
        elif auth["type"] in ("selfSigned", "certificateAuthority"):
            out += ";x509=true"
        return out

    # ---- CA certificates, as Azure's management plane manages them -------------------------------

    def ca_certificates(self, *, dps: bool = False) -> CaCertificates:
        """The CA certificates uploaded to the hub (or to DPS)."""
        return self.dps.cas if dps else self.hub.cas

    async def upload_ca(self, name: str, certificate: str | bytes, *, verified: bool = False, dps: bool = False) -> dict:
        """Upload a CA certificate (PEM, base64 PEM or base64 DER) under `name`; `verified`:
        Azure's "verified on upload", else proof of possession must follow. Returns its record
        (name, certificate, isVerified, verificationCode, etag, created, updated)."""
        text = certificate.decode() if isinstance(certificate, bytes) else certificate
        return await self.ca_certificates(dps=dps).put(name, text, verified=verified)

    async def ca_verification_code(self, name: str, *, dps: bool = False) -> str:
        """A new verification code for the CA `name`: the CN of the certificate `verify_ca` takes."""
        record = await self.ca_certificates(dps=dps).generate_verification_code(name, "*")
        return record["verificationCode"]

    async def verify_ca(self, name: str, certificate: str | bytes, *, dps: bool = False) -> dict:
        """Proof of possession: a certificate signed by the CA whose CN is its verification code."""
        text = certificate.decode() if isinstance(certificate, bytes) else certificate
        return await self.ca_certificates(dps=dps).verify(name, text, "*")

    async def delete_ca(self, name: str, *, dps: bool = False) -> None:
        await self.ca_certificates(dps=dps).delete(name, "*")

    async def send_c2d(self, device_id: str, data: bytes | str, **options: Any):
        """Queue a cloud-to-device message (what the AMQP-only service SDK call does in Azure).

        Options: properties (dict), message_id, correlation_id, user_id, content_type,
        content_encoding, ack, ttl (seconds). Returns the queued message.
        """
        body = data.encode() if isinstance(data, str) else data
        return await self.hub.c2d.send(device_id, body, **options)

    def service_token(self, policy: str = "iothubowner", ttl: int = 3600) -> str:
        pol = next(p for p in self.policies if p.name == policy)
        return sas.generate(self._host_port(self.https_port, 443), pol.key, key_name=pol.name, ttl=ttl)

    def _write_endpoints(self) -> None:
        path = self.config.data_dir / ENDPOINTS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.info(), indent=2))
        os.replace(tmp, path)


async def _bind(what: str, host: str, port: int, start: Any) -> None:
    try:
        await start()
    except PermissionError as exc:
        raise ConfigError(
            f"cannot bind {what} to {host}:{port}: {exc.strerror}. Ports below 1024 need root or "
            f"CAP_NET_BIND_SERVICE (e.g. `setcap cap_net_bind_service=+ep $(readlink -f $(which python3))`), "
            f"or choose another port with --{what.lower()}-port"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot bind {what} to {host}:{port}: {exc.strerror or exc}") from None


class EmulatorThread:
    """An Emulator on its own event loop in a background thread, for synchronous callers."""

    def __init__(self, config: Config | None = None, *, clock: Clock = SYSTEM_CLOCK, **overrides: Any) -> None:
        self.emulator = Emulator(config, clock=clock, **overrides)
        self.loop = loop_factory(self.emulator.config.event_loop)()  # uvloop when installed; the policy is untouched
        self._thread = threading.Thread(target=self.loop.run_forever, name="azure-iot-harness", daemon=True)

    def start(self) -> Emulator:
        self._thread.start()
        try:
            self.call(self.emulator.start())
        except BaseException:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            raise
        return self.emulator

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the emulator's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.call(self.emulator.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
