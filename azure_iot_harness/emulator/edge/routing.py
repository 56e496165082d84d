"""The edge's current routes: which endpoints a message goes to, with what priority and TTL.

Routes come in the shape of a deployment manifest's `$edgeHub` desired properties and can be
replaced while the edge runs; a malformed route is reported by name and the others keep working.
"""

from __future__ import annotations

import logging
from typing import Any

from ..protocol.messages import Telemetry
from .queue import UPSTREAM, module_endpoint
from .routes import BrokeredEndpoint, RouteSet, default_routes, load_routes

log = logging.getLogger("azure_iot_harness.edge")


class Router:
    def __init__(self, spec: Any = None) -> None:
        self.routes: RouteSet = self.replace(spec)

    def replace(self, spec: Any = None) -> RouteSet:
        """Load new routes (None: edgeHub's default `FROM /* INTO $upstream`); RouteError for a
        configuration that is unusable as a whole."""
        routes = load_routes(spec if spec is not None else {"schemaVersion": "1.1", "routes": default_routes()})
        for name, error in routes.errors:
            log.error("edge route %r refused, the other routes keep working: %s", name, error)
        self.routes = routes
        log.info("edge routes: %s", ", ".join(f"{r.name}: {r.text}" for r in routes) or "none")
        return routes

    def targets(self, telemetry: Telemetry) -> list[tuple[str, int, float]]:
        """(endpoint, priority, ttl seconds; negative = never expires) for each sink that takes it."""
        out = []
        for route, sink in self.routes.select(telemetry):
            endpoint = module_endpoint(sink.module, sink.input) if isinstance(sink, BrokeredEndpoint) else UPSTREAM
            ttl = self.routes.time_to_live(route)
            out.append((endpoint, route.priority, -1.0 if ttl is None else float(ttl)))
        return out

    def describe(self) -> dict:
        return {
            "routes": {r.name: r.text for r in self.routes},
            "errors": dict(self.routes.errors),
            "timeToLiveSecs": self.routes.time_to_live_secs,
        }
