"""`azure-iot-harness certify`: judge a device the harness did not write against Azure's rules.

The run (`runner`): an emulator (`lab`), the device's identity and settings (`device`), the
device program or an external device, then the checks of a profile (`profiles`) in the
catalogue's fixed order (`catalogue`), each driving the emulator through its public API (the
fault book, service REST) and judging the packet trace (`context`, `judge`). Reports
(`report`): JUnit XML, JSON, one HTML page. `command` is the CLI verb; `pytest_plugin` the
pytest feature.

Layering: certify may use `running/`, `clients/` and the emulator's public API (Emulator,
its HTTP API, `protocol` functions); nothing below imports it (tests/test_layers.py).
"""

from .model import Check, CheckResult, Result
from .report import Report
from .runner import RunOptions, run

__all__ = ["Check", "CheckResult", "Report", "Result", "RunOptions", "run"]
