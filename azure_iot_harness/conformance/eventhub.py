"""Telemetry from real IoT Hub through its Event Hubs-compatible endpoint (`azure-eventhub`, an
optional extra). Not exercised in this repository's CI: it needs a subscription."""

from __future__ import annotations

import threading
from typing import Any

from azure.eventhub import EventHubConsumerClient  # ImportError: the target skips with a reason


class EventHubTelemetry:
    """Receives from every partition on a thread, from the moment it is made."""

    def __init__(self, connection_string: str) -> None:
        self._messages: list[dict] = []
        self._lock = threading.Lock()
        self._client = EventHubConsumerClient.from_connection_string(connection_string, consumer_group="$Default")
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        self._client.receive(on_event=self._on_event, starting_position="@latest")

    def _on_event(self, partition: Any, event: Any) -> None:
        if event is None:
            return
        sysprops = {k.decode() if isinstance(k, bytes) else k: str(v) for k, v in (event.system_properties or {}).items()}
        props = {k.decode() if isinstance(k, bytes) else k: (v.decode() if isinstance(v, bytes) else v) for k, v in (event.properties or {}).items()}
        with self._lock:
            self._messages.append({
                "deviceId": sysprops.get("iothub-connection-device-id"),
                "moduleId": sysprops.get("iothub-connection-module-id"),
                "body": event.body_as_str(),
                "properties": props,
                "systemProperties": sysprops,
            })

    def position(self) -> int:
        with self._lock:
            return len(self._messages)

    def read(self, after: int) -> tuple[list[dict], int]:
        with self._lock:
            return list(self._messages[after:]), len(self._messages)
