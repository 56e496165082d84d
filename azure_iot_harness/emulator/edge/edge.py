"""`Edge`: the edgeHub stand-in next to the hub — its listener, PKI, queues, upstream, twin
cache, workload API and status.

The edge knows the hub only through a `HubLink`: where the hub's MQTT listener is, and the
registry and credentials a child's CONNECT is checked against (the registry also stands in for
edgeHub's scope-identities cache: the edge listens to its changes).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509 as cx509

from ...certs import DevPKI, EdgePKI
from ...config import EdgeSettings, Policy
from ...errors import ConfigError
from ..clock import SYSTEM_CLOCK, Clock
from ..faults import FaultBook
from ..frontdoor import FrontDoor
from ..https_server import HttpsServer
from ..hub.registry import Registry
from ..mqtt.listener import MqttListener
from ..protocol import sas
from ..protocol.messages import utc_now_iso
from ..store import Store
from ..tls import server_context
from ..trace import Trace
from . import workload
from .counters import EdgeCounters
from .edgehub import EdgeHub
from .queue import EdgeQueues
from .routing import Router
from .twin_cache import TwinCache
from .twins import EdgeTwins
from .upstream import Upstream

log = logging.getLogger("azure_iot_harness.edge")


@dataclass(frozen=True)
class HubLink:
    """The hub an edge serves, as the edge sees it."""

    host: str  # the hub's host name (usernames, SAS audiences, TLS server name)
    address: str  # where its MQTT listener is bound
    port: Callable[[], int]  # its MQTT port now (it changes when the listener restarts)
    registry: Registry
    policies: tuple[Policy, ...]
    trusted_cas: tuple[cx509.Certificate, ...]  # CAs of certificateAuthority devices


class Edge:
    def __init__(
        self,
        settings: EdgeSettings,
        store: Store,
        clock: Clock = SYSTEM_CLOCK,
        *,
        hub: HubLink,
        pki: DevPKI,
        trace: Trace | None = None,
        faults: FaultBook | None = None,
    ) -> None:
        """Build what needs the store before it starts; start() does the rest. `pki` is the
        development PKI, whose root issues the edge CA chain and signs the hub's certificate;
        `trace`/`faults`: the emulator's packet trace and faults, for the edge's listener."""
        self.trace = trace
        self.faults = faults
        self.settings = settings
        self.device_id = settings.device_id
        self.host = settings.host
        self.bind = settings.bind
        self.requested_mqtt_port = settings.mqtt_port
        self.clock = clock
        self.hub_link = hub
        self.dev_pki = pki
        self.router = Router(settings.routes)
        self.counters = EdgeCounters()
        self.queues = EdgeQueues(store, clock, counters=self.counters, max_size_bytes=lambda: self.router.routes.max_store_size_bytes)
        self.twin_cache = TwinCache(store)
        self.pki: EdgePKI
        self.upstream: Upstream
        self.twins: EdgeTwins
        self.hub: EdgeHub
        self._edge_key = ""
        self.started = ""
        self.mqtt: MqttListener
        self.workload: HttpsServer

    async def start(self) -> None:
        """Load the queues (the store must have started) and open the edge's listeners and its
        upstream; ConfigError when the edge device is not an IoT Edge device of the registry
        or its port cannot be bound."""
        edge_doc = self.hub_link.registry.get(self.device_id)
        if edge_doc is None:
            raise ConfigError(f"edge device {self.device_id!r} is not in the registry")
        if not (edge_doc.get("capabilities") or {}).get("iotEdge"):
            raise ConfigError(f"device {self.device_id!r} is not an IoT Edge device (capabilities.iotEdge)")
        try:
            await self._start(edge_doc["authentication"]["symmetricKey"]["primaryKey"])
        except PermissionError as exc:
            raise ConfigError(f"cannot bind the edge's MQTT port {self.bind}:{self.requested_mqtt_port}: {exc.strerror}") from None
        except OSError as exc:
            raise ConfigError(
                f"cannot start the edge on {self.bind}:{self.requested_mqtt_port}: {exc.strerror or exc} "
                "(choose another address with --edge-bind or port with --edge-mqtt-port)"
            ) from None
        log.info("edgeHub for %s on mqtts://%s:%d", self.device_id, self.host, self.mqtt.port)

    async def _start(self, edge_key: str) -> None:
        link, settings, dev_pki = self.hub_link, self.settings, self.dev_pki
        self._edge_key = edge_key
        self.started = utc_now_iso(self.clock.now())
        await self.queues.load()
        self.pki = EdgePKI.create(dev_pki.root, [self.host, self.bind], settings.pki_folder)
        client_ctx = ssl.create_default_context(cadata=dev_pki.root_pem.decode())
        self.upstream = Upstream(
            edge_device_id=self.device_id,
            hub_host=link.host,
            hub_address=link.address,
            hub_port=link.port,
            ssl_context=client_ctx,
            token=lambda: sas.generate(f"{link.host}/devices/{self.device_id}", edge_key, expiry=int(self.clock.time() + 3600)),
            queues=self.queues,
            edge_problem=self.edge_problem,
            clock=self.clock,
        )
        self.twins = EdgeTwins(self.twin_cache, self.upstream, self.counters)
        await self.twins.load()
        self.hub = EdgeHub(
            edge_device_id=self.device_id,
            edge_host=self.host,
            hub_host=link.host,
            registry=link.registry,
            policies=link.policies,
            trusted_cas=list(link.trusted_cas),
            queues=self.queues,
            upstream=self.upstream,
            twins=self.twins,
            router=self.router,
            counters=self.counters,
            clock=self.clock,
        )
        self.upstream.device_problem = self.hub.device_problem
        self.mqtt = MqttListener(
            host=self.bind,
            port=self.requested_mqtt_port,
            tls=server_context(self.pki.server_chain_pem, self.pki.server_key_pem),
            router=FrontDoor(self.hub),
            max_idle=settings.max_idle_seconds,
            connect_timeout=settings.connect_timeout,
            trace=self.trace,
            faults=self.faults,
            name="edge",
        )
        await self.mqtt.start()
        app = workload.build_app(edge_device_id=self.device_id, registry=link.registry, trust_bundle=lambda: dev_pki.root_pem)
        self.workload = HttpsServer(app, host="127.0.0.1", port=settings.workload_port, tls=None)
        await self.workload.start()
        await self.upstream.start()

    async def stop(self) -> None:
        await self.hub.stop()
        await self.mqtt.stop()
        await self.twins.stop()
        await self.upstream.stop()
        await self.workload.stop()

    def edge_problem(self) -> str | None:
        """What is wrong with the edge device itself, as the registry shows it (None: nothing):
        every child's upstream connection carries its credentials."""
        doc = self.hub_link.registry.get(self.device_id)
        if doc is None:
            return f"the edge device {self.device_id} is not registered"
        if doc.get("status", "enabled") != "enabled":
            return f"the edge device {self.device_id} is disabled"
        keys = (doc.get("authentication") or {}).get("symmetricKey") or {}
        if self._edge_key not in (keys.get("primaryKey"), keys.get("secondaryKey")):
            return f"the edge device {self.device_id}'s keys changed since the edge started"
        return None

    def status(self) -> dict:
        """What `GET /_emulator/edge` shows: upstream state, queue depths, store use, counters."""
        routes = self.router.routes
        return {
            "deviceId": self.device_id,
            "started": self.started,
            "upstream": self.upstream.status(),
            "queues": self.queues.depth(),
            "store": {
                "usedBytes": self.queues.used_bytes,
                "maxSizeBytes": routes.max_store_size_bytes,
                "timeToLiveSecs": routes.time_to_live_secs,
            },
            **self.counters.as_json(),
            **self.hub.status(),
            **self.twins.status(),
        }

    @property
    def mqtt_port(self) -> int:
        return self.mqtt.port

    def module_environment(self, module_id: str) -> dict[str, str]:
        """The environment IoT Edge gives a module, for `create_from_edge_environment()`."""
        doc = self.hub_link.registry.get(self.device_id, module_id)
        if doc is None:
            raise KeyError(f"no module {self.device_id}/{module_id}")
        return {
            "IOTEDGE_IOTHUBHOSTNAME": self.hub_link.host,
            "IOTEDGE_DEVICEID": self.device_id,
            "IOTEDGE_MODULEID": module_id,
            "IOTEDGE_GATEWAYHOSTNAME": self.host,
            "IOTEDGE_MODULEGENERATIONID": doc["generationId"],
            "IOTEDGE_WORKLOADURI": f"http://127.0.0.1:{self.workload.port}/",
            "IOTEDGE_APIVERSION": workload.API_VERSION,
            "IOTEDGE_AUTHSCHEME": "sasToken",
        }

    def info(self) -> dict:
        return {
            "deviceId": self.device_id,
            "host": self.host,
            "mqtt": {"host": self.host, "port": self.mqtt_port},
            "workloadUri": f"http://127.0.0.1:{self.workload.port}/",
            "routes": self.router.describe(),
        }
