"""Development PKI made with trustme: root CA, server certificates, device CA and device certificates."""

from .pki import DeviceCert, DevPKI, EdgePKI, self_signed_cert, thumbprints

__all__ = ["DevPKI", "EdgePKI", "DeviceCert", "self_signed_cert", "thumbprints"]
