"""A client certificate chain as the convenience scripts write it: leaf + intermediate, from a
root the emulator does not know."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme


@dataclass(frozen=True)
class ChainFiles:
    certfile: Path  # leaf, then the intermediate (PEM)
    keyfile: Path
    ders: tuple[bytes, ...]  # what the client sends, leaf first


@pytest.fixture
def chain_files(tmp_path: Path) -> ChainFiles:
    intermediate = trustme.CA().create_child_ca()
    leaf = intermediate.issue_cert("chain-device", common_name="chain-device")
    certfile, keyfile = tmp_path / "chain.pem", tmp_path / "chain.key"
    certfile.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    keyfile.write_bytes(leaf.private_key_pem.bytes())
    ders = tuple(ssl.PEM_cert_to_DER_cert(blob.bytes().decode()) for blob in leaf.cert_chain_pems)
    assert len(ders) == 2 and ders[1] == ssl.PEM_cert_to_DER_cert(intermediate.cert_pem.bytes().decode())
    return ChainFiles(certfile, keyfile, ders)
