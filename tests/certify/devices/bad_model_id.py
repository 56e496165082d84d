"""Announces a model id that is not a DTMI."""

import sys

from azure_iot_harness.clients.reference_device import ReferenceDevice, main

if __name__ == "__main__":
    sys.exit(main(ReferenceDevice, [*sys.argv[1:], "--model-id", "thermostat-v1"]))
