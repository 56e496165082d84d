"""Development PKI made with trustme: root CA, server certificates, device CA and device certificates,
and the bad server certificates of the TLS faults (with a second, rotated root)."""

from .pki import DeviceCert, DevPKI, EdgePKI, self_signed_cert, thumbprints
from .server_faults import FAULT_CERTIFICATES, FaultCertificates, RotatedRoot, ServerChain

__all__ = ["FAULT_CERTIFICATES", "DevPKI", "EdgePKI", "DeviceCert", "FaultCertificates", "RotatedRoot", "ServerChain", "self_signed_cert", "thumbprints"]
