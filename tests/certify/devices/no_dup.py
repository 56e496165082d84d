"""Forgets the DUP flag: after a reconnect it sends unacknowledged messages again as new ones
(a new paho session per connection, its own resend list)."""

import sys
from typing import Any

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class Device(ReferenceDevice):
    unacked: dict[int, tuple[str, str]]

    def client_for_attempt(self) -> Any:
        self.unacked = getattr(self, "unacked", {})
        self.client = self.new_client()
        self.client.on_publish = lambda c, u, mid: self.unacked.pop(mid, None)
        return self.client

    def on_connected(self) -> None:
        super().on_connected()
        again, self.unacked = list(self.unacked.values()), {}
        for topic, body in again:
            self.unacked[self.client.publish(topic, body, qos=1).mid] = (topic, body)

    def send_telemetry(self) -> None:
        self.seq += 1
        body = f'{{"seq": {self.seq}}}'
        self.unacked[self.client.publish(self.telemetry_topic(), body, qos=1).mid] = (self.telemetry_topic(), body)


if __name__ == "__main__":
    sys.exit(main(Device))
