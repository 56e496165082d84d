"""Make SDKs that read certifi's CA bundle (azure-eventhub, uamqp: azure-iot-hub, the az CLI's
IoT extension) trust the development root CA, and undo it.

They ignore the system store and `SSL_CERT_FILE`, so the CA goes into the bundle of the virtual
environment they run in, between two marker lines; `undo` removes exactly that block (so does
`pip install --force-reinstall certifi`). The system and other environments are never touched.
"""

from __future__ import annotations

from pathlib import Path

BEGIN = "# azure-iot-harness development CA: BEGIN"
END = "# azure-iot-harness development CA: END"


def default_bundle() -> Path:
    """certifi's bundle in the running environment."""
    import certifi

    return Path(certifi.where())


def _without_block(text: str) -> str:
    start = text.find(BEGIN)
    if start < 0:
        return text
    end = text.find(END, start)
    end = len(text) if end < 0 else end + len(END)
    return (text[:start].rstrip("\n") + "\n" + text[end:].lstrip("\n")).rstrip("\n") + "\n"


def add(bundle: Path, ca_pem: bytes) -> None:
    """Add (or replace) the development CA in `bundle`."""
    text = _without_block(bundle.read_text())
    bundle.write_text(f"{text}{BEGIN}\n{ca_pem.decode().strip()}\n{END}\n")


def remove(bundle: Path) -> bool:
    """Take the development CA out of `bundle`; False when it was not there."""
    text = bundle.read_text()
    if BEGIN not in text:
        return False
    bundle.write_text(_without_block(text))
    return True
