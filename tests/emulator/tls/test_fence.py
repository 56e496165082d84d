"""In the emulator and the PKI, private APIs of the standard library and of dependencies are
touched only inside emulator/tls/."""

from __future__ import annotations

from pathlib import Path

import azure_iot_harness

PACKAGE = Path(azure_iot_harness.__file__).parent
FENCE = PACKAGE / "emulator" / "tls"
# What the three old workarounds used: asyncio's TLS internals, a ctypes verify callback,
# hypercorn's connection tasks, trustme's private certificate attribute.
PRIVATE = ("sslproto", "ctypes", "import _ssl", "all_tasks(", "hypercorn.asyncio.tcp_server", "worker_context", "._certificate")


def test_no_private_api_outside_the_tls_adapter():
    found = [
        f"{path.relative_to(PACKAGE)}: {word}"
        for area in ("emulator", "certs")
        for path in (PACKAGE / area).rglob("*.py")
        if FENCE not in path.parents
        for word in PRIVATE
        if word in path.read_text()
    ]
    assert found == []
