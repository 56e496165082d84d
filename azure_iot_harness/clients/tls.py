"""TLS as the client programs do it: a context pinned to TLS 1.2 with host name checking (as the
Azure SDKs pin it), and a CA file for tools that need one on disk."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from ..running.errors import CommandError


def tls_context(ca_file: str | None, cert_file: str | None = None, key_file: str | None = None) -> ssl.SSLContext:
    """TLS 1.2 trusting `ca_file` (None: the system's CA store), with a client certificate when given."""
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise CommandError(f"cannot load CA file {ca_file}: {exc}", 2) from None
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        try:
            ctx.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise CommandError(f"cannot load certificate {cert_file} with key {key_file}: {exc}", 2) from None
    return ctx


def system_ca_file() -> str:
    """The system's CA bundle as a file, for tools (mosquitto) that want one."""
    paths = ssl.get_default_verify_paths()
    for candidate in (os.environ.get("SSL_CERT_FILE"), paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise CommandError("no CA file: give --ca-file", 2)
