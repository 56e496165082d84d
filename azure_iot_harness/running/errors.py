"""The one error the command line and the client programs report: a message and an exit code."""

from __future__ import annotations

from ..errors import HarnessError


class CommandError(HarnessError):
    """A failure reported as one line, `error: MESSAGE`, after which the process exits with
    `code`: 1 when the thing asked about is not there or the run failed (no running emulator,
    unknown device, refused connection), 2 for usage, configuration or a missing tool."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
