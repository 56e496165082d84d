"""`WorkDir`: where a client program writes its files (configurations, issued certificates)."""

from __future__ import annotations

import tempfile
from pathlib import Path


class WorkDir:
    """`--work-dir DIR` (kept), or a temporary folder removed when the program ends."""

    def __init__(self, path: str | None, prefix: str) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if path:
            self.path = Path(path)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"azure-iot-harness-{prefix}-")
            self.path = Path(self._tmp.name)
        self.path.mkdir(parents=True, exist_ok=True)

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
