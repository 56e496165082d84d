"""Telemetry as a back end reads it: the hub's Event Hubs-compatible endpoint with azure-eventhub,
every partition of `$Default`, on a thread. The same code for the emulator and for real IoT Hub;
the endpoint comes from IoT Hub's redirect (`amqp.event_hubs_connection_string`) or is given."""

from __future__ import annotations

import threading
from typing import Any

from azure.eventhub import EventHubConsumerClient, TransportType  # ImportError: the target skips with a reason


class EventHubTelemetry:
    """Receives every event enqueued after it was made, from every partition."""

    def __init__(self, connection_string: str, *, ca_file: str | None = None, endpoint: str | None = None,
                 consumer_group: str = "$Default") -> None:
        """`ca_file`: the CA to trust (None: certifi's, as azure-eventhub does); `endpoint`:
        `sb://host:port` when the port is not 5671."""
        self._messages: list[dict] = []
        self._lock = threading.Lock()
        options: dict[str, Any] = {"consumer_group": consumer_group}
        if ca_file:
            options["connection_verify"] = ca_file
        if endpoint:  # AMQP over TLS there (a custom endpoint alone would mean WebSocket)
            options.update(custom_endpoint_address=endpoint, transport_type=TransportType.Amqp)
        self._client = EventHubConsumerClient.from_connection_string(connection_string, **options)
        # Each partition's last sequence number now: the receivers start right after it, so
        # nothing enqueued from here on is missed however long their links take to attach.
        start = {pid: self._client.get_partition_properties(pid)["last_enqueued_sequence_number"]
                 for pid in self._client.get_partition_ids()}
        self._thread = threading.Thread(target=self._receive, args=(start,), daemon=True, name="conformance-eventhub")
        self._thread.start()

    def _receive(self, start: dict[str, int]) -> None:
        self._client.receive(on_event=self._on_event, starting_position=start, starting_position_inclusive=False)

    def _on_event(self, partition: Any, event: Any) -> None:
        if event is None:
            return
        sysprops = {_text(k): str(_text(v)) for k, v in (event.system_properties or {}).items()}
        props = {_text(k): _text(v) for k, v in (event.properties or {}).items()}
        with self._lock:
            self._messages.append({
                "deviceId": sysprops.get("iothub-connection-device-id"),
                "moduleId": sysprops.get("iothub-connection-module-id"),
                "body": event.body_as_str(),
                "properties": props,
                "systemProperties": sysprops,
            })  # fmt: skip

    def position(self) -> int:
        with self._lock:
            return len(self._messages)

    def read(self, after: int) -> tuple[list[dict], int]:
        with self._lock:
            return list(self._messages[after:]), len(self._messages)

    def close(self) -> None:
        self._client.close()
        self._thread.join(timeout=10)


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value
