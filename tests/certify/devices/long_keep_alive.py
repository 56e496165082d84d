"""Keep-alive 1800 s: beyond Azure's idle cap, and a dead link goes unnoticed for an hour."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main

if __name__ == "__main__":
    sys.exit(main(ReferenceDevice, [*sys.argv[1:], "--keep-alive", "1800"]))
