"""Chains for tests: a root and intermediate of the test's own (as a firmware team has them), made
with the project's code or with the `openssl` command as a user would on their machine."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from azure_iot_harness.certs.chain import Issued, issue


@dataclass
class OwnPki:
    root: Issued
    intermediate: Issued

    @classmethod
    def make(cls) -> OwnPki:
        root = issue("Firmware Team Root", ca=True)
        return cls(root, issue("Firmware Team Intermediate", root, ca=True))

    def device(self, cn: str, folder: Path, *, full_chain: bool = True) -> tuple[str, str]:
        """Write a device certificate (with the intermediate and the root when `full_chain`) and its key."""
        dev = issue(cn, self.intermediate, ca=False)
        cert, key = folder / f"{cn.replace('/', '_')}.pem", folder / f"{cn.replace('/', '_')}.key"
        dev.write(cert, key, full_chain=full_chain)
        return str(cert), str(key)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def openssl_chain(folder: Path, device_id: str) -> dict[str, Path]:
    """root → intermediate → device made by the `openssl` command with RSA keys and the
    extensions the convenience scripts give them; the device file holds the full chain."""
    folder.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "root.key", "-out", "root.pem", "-days", "30",
            "-subj", "/CN=OpenSSL Test Root", "-addext", "basicConstraints=critical,CA:true",
            "-addext", "keyUsage=critical,digitalSignature,cRLSign,keyCertSign", cwd=folder)  # fmt: skip
    (folder / "inter.ext").write_text("basicConstraints=critical,CA:true\nkeyUsage=critical,digitalSignature,cRLSign,keyCertSign\n"
                                      "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "inter.key", "-out", "inter.csr", "-subj",
            "/CN=OpenSSL Test Intermediate", cwd=folder)  # fmt: skip
    openssl("x509", "-req", "-in", "inter.csr", "-CA", "root.pem", "-CAkey", "root.key", "-CAcreateserial", "-days", "30",
            "-sha256", "-extfile", "inter.ext", "-out", "inter.pem", cwd=folder)  # fmt: skip
    (folder / "device.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,nonRepudiation,digitalSignature,keyEncipherment\n"
                                       "extendedKeyUsage=clientAuth,emailProtection\n")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "device.key", "-out", "device.csr", "-subj", f"/CN={device_id}", cwd=folder)
    openssl("x509", "-req", "-in", "device.csr", "-CA", "inter.pem", "-CAkey", "inter.key", "-CAcreateserial", "-days", "30",
            "-sha256", "-extfile", "device.ext", "-out", "device.pem", cwd=folder)  # fmt: skip
    full = folder / "device-full-chain.pem"
    full.write_bytes(b"".join((folder / n).read_bytes() for n in ("device.pem", "inter.pem", "root.pem")))
    return {"root": folder / "root.pem", "root_key": folder / "root.key", "full_chain": full, "key": folder / "device.key"}
