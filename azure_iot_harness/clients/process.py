"""Child processes of the variants (mosquitto, node-red, mosquitto_pub): started so that they die
with us, their output read line by line on a thread so that reads can time out."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO

from ..running.errors import CommandError


def _load_prctl():
    # Resolved here, in the parent: the child runs between fork and exec, where loading a
    # library could wait forever on a lock another thread of ours held at the fork.
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    # The child gets SIGTERM when this process dies, even by SIGKILL (PR_SET_PDEATHSIG).
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)


class Child:
    """A started tool with its merged stdout/stderr as a queue of lines (with talk=True: its
    stdout only, stderr passed through to ours, and a pipe to its stdin)."""

    def __init__(self, cmd: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None, talk: bool = False) -> None:
        self.cmd = cmd
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE if talk else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=None if talk else subprocess.STDOUT,
                text=True,
                env=env,
                cwd=cwd,
                preexec_fn=_die_with_parent if _PRCTL is not None else None,
            )
        except OSError as exc:
            raise CommandError(f"cannot start {cmd[0]}: {exc.strerror or exc}", 2) from None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def read(self, deadline: float | None) -> Iterator[str | None]:
        """Lines until the deadline (None: no deadline); yields None once at end of output."""
        while True:
            try:
                line = self.lines.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            if line is not None:
                self.seen.append(line)
            yield line
            if line is None:
                return

    def tail(self, n: int = 5) -> str:
        return " | ".join(self.seen[-n:])

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def stop_on_signals() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so that `finally` blocks stop the children."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        if os.name != "nt":
            signal.signal(signal.SIGHUP, handler)
