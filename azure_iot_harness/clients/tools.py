"""The external tools the client programs run (mosquitto, node-red, mosquitto_pub): finding the
executable, a free port for them to listen on, and waiting until they do."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

from ..errors import HarnessError
from ..running.errors import CommandError


class PortTaken(HarnessError):
    """A tool could not listen: another process took its port first (the caller draws another)."""


def find_tool(name: str, flag_value: str | None, install_hint: str) -> str:
    """The path of an executable: the flag's, or the one on PATH; CommandError(2) when missing."""
    if flag_value:
        if Path(flag_value).is_file() and os.access(flag_value, os.X_OK):
            return flag_value
        found = shutil.which(flag_value)
        if found:
            return found
        raise CommandError(f"{flag_value} is not an executable ({install_hint})", 2)
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}") if os.access(p, os.X_OK)), None)
    if not found:
        raise CommandError(f"{name} is not installed ({install_hint})", 2)
    return found


def wait_listening(bind: str, port: int, timeout: float = 10.0) -> bool:
    """Whether something accepts TCP on bind:port within the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((bind, port), timeout=1).close()
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def free_port(bind: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (tools such as mosquitto cannot pick one themselves)."""
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET) as s:
        s.bind((bind, 0))
        port: int = s.getsockname()[1]
        return port
