"""A conformant device on the official Python device SDK (azure-iot-device): a small sample app
reading certify's environment. The SDK connects, sends, answers; the app adds what Azure's
guidance asks of it: GET the twin after every connect and report desired properties back
(again after a throttled answer: the SDK raises on it),
answer unknown methods with 404, and reconnect with exponential back-off and jitter (the SDK's
own retry is a fixed interval, so it is turned off)."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from typing import Any

from azure.iot.device import X509, IoTHubDeviceClient, Message, MethodResponse

ENV = os.environ


def make_client(keep_alive: int) -> IoTHubDeviceClient:
    ca = open(ENV["AZURE_IOT_CERTIFY_CA_FILE"]).read()
    options: dict[str, Any] = {"server_verification_cert": ca, "connection_retry": False, "keep_alive": keep_alive}
    if ENV.get("AZURE_IOT_CERTIFY_AUTH") == "x509":
        x509 = X509(ENV["AZURE_IOT_CERTIFY_CERT_FILE"], ENV["AZURE_IOT_CERTIFY_KEY_FILE"])
        return IoTHubDeviceClient.create_from_x509_certificate(
            x509=x509, hostname=ENV["AZURE_IOT_CERTIFY_HOST"], device_id=ENV["AZURE_IOT_CERTIFY_DEVICE_ID"], **options
        )
    return IoTHubDeviceClient.create_from_connection_string(ENV["AZURE_IOT_CERTIFY_CONNECTION_STRING"], **options)


def main() -> int:
    methods = {m for m in ENV.get("AZURE_IOT_CERTIFY_METHODS", "").split(",") if m}
    interval = float(ENV.get("AZURE_IOT_CERTIFY_TELEMETRY_INTERVAL", "5"))
    keep_alive = int(sys.argv[sys.argv.index("--keep-alive") + 1]) if "--keep-alive" in sys.argv else 30
    client = make_client(keep_alive)

    def report(desired: dict[str, Any]) -> None:
        patch = {k: v for k, v in desired.items() if not k.startswith("$")}
        for attempt in range(1, 6):  # the SDK raises on an error status (429 throttled): try again later
            if not patch:
                return
            try:
                client.patch_twin_reported_properties(patch)
                return
            except Exception as exc:
                print(f"reported patch failed ({type(exc).__name__}: {exc}): again in {attempt} s", flush=True)
                time.sleep(attempt * random.uniform(1.0, 1.25))

    def on_method(request: Any) -> None:
        status = 200 if request.name in methods else 404
        client.send_method_response(MethodResponse.create_from_method_request(request, status, {"method": request.name}))

    client.on_method_request_received = on_method
    client.on_twin_desired_properties_patch_received = report
    client.on_message_received = lambda message: print(f"C2D: {message.data[:80]!r}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    attempt, seq = 0, 0
    while True:
        try:
            client.connect()
            report(client.get_twin().get("desired", {}))
            connected_at = time.monotonic()
            while client.connected:
                seq += 1
                message = Message(json.dumps({"seq": seq}), content_encoding="utf-8", content_type="application/json")
                client.send_message(message)
                time.sleep(interval)
            if time.monotonic() - connected_at > 2:
                attempt = 0
        except Exception as exc:  # the SDK's connection errors: try again later
            print(f"connection problem: {type(exc).__name__}: {exc}", flush=True)
        attempt += 1
        time.sleep(min(30.0, 2 ** (attempt - 1)) * random.uniform(1.0, 1.25))


if __name__ == "__main__":
    sys.exit(main())
