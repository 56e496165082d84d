"""Sends a PINGREQ before its CONNECT (raw TLS: paho would not)."""

import socket
import sys
import time

from azure_iot_harness.clients.reference_device import ReferenceDevice, settings_from


def main() -> int:
    device = ReferenceDevice(settings_from())
    while True:
        try:
            with socket.create_connection((device.s.address, device.s.port), timeout=5) as raw:
                with device.tls().wrap_socket(raw, server_hostname=device.s.address) as tls:
                    tls.sendall(b"\xc0\x00")
                    while tls.recv(1024):
                        pass
        except OSError:
            pass
        time.sleep(1.5)


if __name__ == "__main__":
    sys.exit(main())
