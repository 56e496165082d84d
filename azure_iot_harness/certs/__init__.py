"""Development PKI made with trustme (root CA, server certificates, device CA and device
certificates), chains of one's own (`chain`) and the convenience scripts' files (`convenience`)."""

from .pki import DeviceCert, DevPKI, EdgePKI, edge_pki_from_ca, self_signed_cert, thumbprints

__all__ = ["DevPKI", "EdgePKI", "DeviceCert", "edge_pki_from_ca", "self_signed_cert", "thumbprints"]
