"""The endpoints file: what `serve` writes into its data folder, and how every other command
finds the running emulator through it, with the reason when there is none."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..config import ENDPOINTS_FILE, Config
from .errors import CommandError

# What a file written by this version of the emulator always holds.
ENDPOINT_KEYS = ("hubHostName", "mqtt", "https", "caFile", "connectionStrings")
START_HINT = "(start one with `azure-iot-harness serve`)"


def data_dir(given: str | os.PathLike[str] | None) -> Path:
    """The data folder a command means: `--data-dir`, else the environment or config file's
    setting, else the default."""
    return Config.load(flags={"data_dir": given}).data_dir


def pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def read_endpoints(data_dir: Path) -> dict[str, Any]:
    """The endpoints file of the emulator running with `data_dir`; CommandError(1) when no
    emulator runs there (no file, or one left by a process that is gone) or the file is unreadable."""
    path = data_dir / ENDPOINTS_FILE
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise CommandError(f"no emulator is running with data folder {data_dir} {START_HINT}") from None
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None
    if not isinstance(info, dict):
        raise CommandError(f"{path} is not an endpoints file")
    pid = info.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        raise CommandError(
            f"no emulator is running with data folder {data_dir}: {path} is stale "
            f"(process {pid} is gone; the file can be deleted) {START_HINT}"
        )
    if not isinstance(info.get("https"), dict) or not all(k in info for k in ENDPOINT_KEYS):
        raise CommandError(f"{path} is not an endpoints file of this version of azure-iot-harness")
    return info


def connect_host(info: dict[str, Any]) -> str:
    """An address to reach the emulator at; the server certificate covers it (and loopback)."""
    bind = info.get("bind") or "127.0.0.1"
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind, bind)


def https_host_port(info: dict[str, Any]) -> str:
    """`host[:port]` of the HTTPS endpoint: the HostName of the service connection strings and
    the audience (sr) of the emulator's service tokens."""
    return str(info["https"]["url"]).split("://", 1)[-1].rstrip("/")
