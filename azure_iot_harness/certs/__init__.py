"""Development PKI made with trustme: root CA, server certificates, device CA and device certificates."""

from .pki import DeviceCert, DevPKI, self_signed_cert, thumbprints

__all__ = ["DevPKI", "DeviceCert", "self_signed_cert", "thumbprints"]
