"""`azure-iot-harness conformance [--target emulator|external|azure] [pytest options]`: pytest
over the shipped checks, with a JUnit XML file and the HTML report by default."""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: azure-iot-harness conformance [--target emulator|external|azure] [target settings] [pytest options]

Runs the conformance checks (azure_iot_harness/conformance/checks) with pytest: a line per check,
then the variant x check matrix; writes conformance-junit.xml and conformance-report.html.
Target settings (or their environment variables): --hub-connection-string (IOTHUB_CONNECTION_STRING),
--dps-connection-string (PROVISIONING_SERVICE_CONNECTION_STRING), --id-scope (PROVISIONING_ID_SCOPE),
--ca-file, --mqtt-port, --eventhub-connection-string (EVENTHUB_CONNECTION_STRING); the edge path's
gateway: --conformance-edge-host, --conformance-edge-port (default 8883), --conformance-edge-device
(default edge-device1) (AZURE_IOT_CONFORMANCE_EDGE_HOST/_PORT/_DEVICE).
Any other option goes to pytest (e.g. -n 2, -k telemetry, --junitxml FILE)."""


def main(argv: Sequence[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(USAGE)
        return 0
    import pytest

    from .suite import CHECKS_DIR

    args = [str(CHECKS_DIR), "--rootdir", str(CHECKS_DIR), "-p", "no:cacheprovider", "-o", "addopts=", "-o", "testpaths="]
    if not any(a.startswith("--junitxml") or a.startswith("--junit-xml") for a in argv):
        args.append("--junitxml=conformance-junit.xml")
    code = pytest.main([*args, *argv])
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
