"""Waits for a CONNACK for ever (no CONNACK timeout, and a keep-alive too long to notice)."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main

if __name__ == "__main__":
    sys.exit(main(ReferenceDevice, [*sys.argv[1:], "--connack-timeout", "100000", "--keep-alive", "1000"]))
