"""`Edge`: the edgeHub stand-in next to the hub — its listener, PKI, queues, upstream and workload API."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from ...certs import EdgePKI
from ..frontdoor import FrontDoor
from ..mqtt.listener import MqttListener
from ..protocol import sas
from ..https_server import HttpsServer
from ..tls import server_context
from . import workload
from .edgehub import EdgeHub
from .queue import EdgeQueues
from .routing import Router
from .upstream import Upstream

if TYPE_CHECKING:
    from ..app import Emulator

log = logging.getLogger("azure_iot_harness.edge")


class Edge:
    def __init__(
        self,
        emulator: "Emulator",
        *,
        device_id: str,
        host: str,
        bind: str,
        mqtt_port: int,
        workload_port: int,
        routes: dict | None,
    ) -> None:
        """Build what needs the store before it starts; start() does the rest."""
        self.emulator = emulator
        self.device_id = device_id
        self.host = host
        self.bind = bind
        self.requested_mqtt_port = mqtt_port
        self.requested_workload_port = workload_port
        self.queues = EdgeQueues(emulator.store)
        self.router = Router(routes)
        self.pki: EdgePKI
        self.upstream: Upstream
        self.hub: EdgeHub
        self.mqtt: MqttListener
        self.workload: HttpsServer

    async def start(self, folder: Path | None) -> None:
        emu = self.emulator
        await self.queues.load()
        self.pki = EdgePKI.create(emu.pki.root, [self.host, self.bind], folder)
        client_ctx = ssl.create_default_context(cadata=emu.pki.root_pem.decode())
        edge_key = emu.registry.get(self.device_id)["authentication"]["symmetricKey"]["primaryKey"]  # type: ignore[index]
        hub_host = emu.config.host
        self.upstream = Upstream(
            edge_device_id=self.device_id,
            hub_host=hub_host,
            hub_address=emu.config.bind,
            hub_port=lambda: emu.mqtt.port if emu.mqtt.running else emu.mqtt.requested_port,
            ssl_context=client_ctx,
            token=lambda: sas.generate(f"{hub_host}/devices/{self.device_id}", edge_key),
            queues=self.queues,
        )
        self.hub = EdgeHub(
            edge_device_id=self.device_id,
            edge_host=self.host,
            hub_host=hub_host,
            registry=emu.registry,
            policies=emu.policies,
            trusted_cas=[emu.pki.device_ca_cert],
            queues=self.queues,
            upstream=self.upstream,
            router=self.router,
        )
        self.mqtt = MqttListener(
            host=self.bind,
            port=self.requested_mqtt_port,
            tls=server_context(self.pki.server_chain_pem, self.pki.server_key_pem),
            router=FrontDoor(self.hub),
            max_idle=emu.config.max_idle_seconds,
            connect_timeout=emu.config.connect_timeout,
        )
        await self.mqtt.start()
        app = workload.build_app(edge_device_id=self.device_id, registry=emu.registry, trust_bundle=lambda: emu.pki.root_pem)
        self.workload = HttpsServer(app, host="127.0.0.1", port=self.requested_workload_port, tls=None)
        await self.workload.start()
        await self.upstream.start()
        log.info("edgeHub for %s on mqtts://%s:%d", self.device_id, self.host, self.mqtt.port)

    async def stop(self) -> None:
        await self.upstream.stop()
        await self.mqtt.stop()
        await self.workload.stop()

    @property
    def mqtt_port(self) -> int:
        return self.mqtt.port

    def module_environment(self, module_id: str) -> dict[str, str]:
        """The environment IoT Edge gives a module, for `create_from_edge_environment()`."""
        doc = self.emulator.registry.get(self.device_id, module_id)
        if doc is None:
            raise KeyError(f"no module {self.device_id}/{module_id}")
        return {
            "IOTEDGE_IOTHUBHOSTNAME": self.emulator.config.host,
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
