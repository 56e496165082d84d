"""Development PKI made with trustme (root CA, server certificates, device CA and device
certificates), chains of one's own (`chain`), the convenience scripts' files (`convenience`) and
the bad server certificates of the TLS faults, with a second, rotated root (`server_faults`)."""

from .pki import DeviceCert, DevPKI, EdgePKI, edge_pki_from_ca, self_signed_cert, thumbprints
from .server_faults import FAULT_CERTIFICATES, FaultCertificates, RotatedRoot, ServerChain

__all__ = [
    "FAULT_CERTIFICATES",
    "DevPKI",
    "EdgePKI",
    "DeviceCert",
    "FaultCertificates",
    "RotatedRoot",
    "ServerChain",
    "edge_pki_from_ca",
    "self_signed_cert",
    "thumbprints",
]
