"""The files Microsoft's convenience scripts for test CA certificates (`certGen.sh`,
`ca-certs.ps1`) make, with the same names and roles, so that the tutorials' steps work against
the emulator as written:

    certs/azure-iot-test-only.root.ca.cert.pem          private/azure-iot-test-only.root.ca.key.pem
    certs/azure-iot-test-only.intermediate.cert.pem     private/azure-iot-test-only.intermediate.key.pem
    certs/azure-iot-test-only.chain.ca.cert.pem         (intermediate + root)
    certs/iot-device-NAME.cert.pem, certs/iot-device-NAME-full-chain.cert.pem, private/iot-device-NAME.key.pem
    certs/iot-edge-device-ca-NAME.cert.pem, …-full-chain.cert.pem, private/iot-edge-device-ca-NAME.key.pem
    certs/iot-device-verification-code.cert.pem         private/iot-device-verification-code.key.pem

Device and edge CA certificates are issued by the intermediate, the verification certificate by
the root, as the scripts do. Differences: EC P-256 keys instead of RSA 4096 (quick to make; IoT Hub
takes both), keys written unencrypted (the scripts protect the CA keys with the password `1234`;
such keys are read with that password), validity a year instead of 30 days.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .chain import Issued, issue, load

ROOT = "azure-iot-test-only.root.ca"
INTERMEDIATE = "azure-iot-test-only.intermediate"
CHAIN = "azure-iot-test-only.chain.ca"
SCRIPT_PASSWORD = b"1234"  # what the scripts encrypt their CA keys with


@dataclass(frozen=True)
class Written:
    cert: Path
    key: Path
    full_chain: Path | None = None


class ConvenienceCerts:
    def __init__(self, folder: str | os.PathLike[str] = ".") -> None:
        self.folder = Path(folder)

    def cert_path(self, prefix: str) -> Path:
        return self.folder / "certs" / f"{prefix}.cert.pem"

    def key_path(self, prefix: str) -> Path:
        return self.folder / "private" / f"{prefix}.key.pem"

    def create_root_and_intermediate(self) -> tuple[Written, Written, Path]:
        root = issue("Azure IoT Hub CA Cert Test Only", ca=True)
        intermediate = issue("Azure IoT Hub Intermediate Cert Test Only", root, ca=True)
        chain = self.cert_path(CHAIN)
        written = self._write(ROOT, root), self._write(INTERMEDIATE, intermediate)
        chain.write_bytes(intermediate.cert_pem + root.cert_pem)
        return written[0], written[1], chain

    def create_device_certificate(self, name: str) -> Written:
        return self._write(f"iot-device-{name}", issue(name, self._issuer(INTERMEDIATE), ca=False), full_chain=True)

    def create_edge_device_ca_certificate(self, name: str) -> Written:
        # ".ca" keeps the CA's name apart from the gateway's host name, as the scripts do.
        edge_ca = issue(f"{name}.ca", self._issuer(INTERMEDIATE), ca=True)
        return self._write(f"iot-edge-device-ca-{name}", edge_ca, full_chain=True)

    def create_verification_certificate(self, code: str) -> Written:
        return self._write("iot-device-verification-code", issue(code, self._issuer(ROOT), ca=False))

    def _issuer(self, prefix: str) -> Issued:
        cert, key = self.cert_path(prefix), self.key_path(prefix)
        if not cert.exists() or not key.exists():
            raise FileNotFoundError(f"{cert} or {key} is missing: create the root and intermediate first")
        parents = () if prefix == ROOT else (self._issuer(ROOT).cert,)
        try:
            return load(cert.read_bytes(), key.read_bytes(), parents=parents)
        except TypeError:  # an encrypted key, as the scripts write them
            return load(cert.read_bytes(), key.read_bytes(), SCRIPT_PASSWORD, parents=parents)

    def _write(self, prefix: str, issued: Issued, *, full_chain: bool = False) -> Written:
        cert, key = self.cert_path(prefix), self.key_path(prefix)
        issued.write(cert, key)
        chain = None
        if full_chain:
            chain = self.folder / "certs" / f"{prefix}-full-chain.cert.pem"
            chain.write_bytes(issued.full_chain_pem)
        return Written(cert, key, chain)
