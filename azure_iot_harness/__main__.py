"""`python -m azure_iot_harness`: the same as the `azure-iot-harness` console script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
