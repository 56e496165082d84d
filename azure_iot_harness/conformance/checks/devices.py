"""A device for one matrix row, made through the target's service API and, on the DPS path,
provisioned by the variant's own registration client, on the edge path made a child of the
target's IoT Edge device and pointed at its gateway; removed again afterwards."""

from __future__ import annotations

import base64
import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

from ..credentials import DeviceCredentials
from ..provisioning import REGISTER
from ..suite import Case
from ..targets import Target

DPS_CLIENT = {"paho": "mqtt", "sdk": "sdk"}  # how each device variant registers


def require(case: Case, target: Target) -> None:
    if case.variant == "sdk" and target.sdk_reason:
        pytest.skip(target.sdk_reason)
    if case.auth == "x509-chain" and target.chain_ca is None:
        pytest.skip(target.chain_reason)
    if case.path == "dps" and target.dps is None:
        pytest.skip("this target has no DPS settings (DPS connection string and ID scope)")
    if case.path == "edge":
        if target.edge is None:
            pytest.skip(target.edge_reason)
        if case.variant == "sdk" and target.sdk_edge_reason:
            pytest.skip(target.sdk_edge_reason)


@contextlib.contextmanager
def provisioned(case: Case, target: Target, check: str) -> Iterator[DeviceCredentials]:
    require(case, target)
    svc = target.service
    assert svc is not None
    name = f"conf-{case.variant}-{case.auth}-{check}-{uuid.uuid4().hex[:6]}".replace("_", "-")
    key = base64.b64encode(os.urandom(32)).decode() if case.auth == "sas" else None
    cert, certobj = target.new_cert(name) if case.auth == "x509" else (None, None)
    # x509-chain: a device certificate from an intermediate under a CA verified on the hub; the
    # device presents both; on the DPS path an enrollment group signed by that intermediate.
    chain = case.auth == "x509-chain"
    intermediate = None
    if chain:
        cert, intermediate = target.new_chain_cert(name)
    thumbprint = certobj.sha1_thumbprint if certobj else None
    try:
        if case.path == "direct":
            svc.create_device(name, key=key, thumbprint=thumbprint, ca_signed=chain)
            yield target.creds(name, key=key, cert=cert)
        elif case.path == "edge":
            assert target.edge is not None
            scope = svc.get_device(target.edge.device_id).get("deviceScope")
            assert scope, f"the edge device {target.edge.device_id} has no deviceScope (is it an IoT Edge device?)"
            svc.create_device(name, key=key, thumbprint=thumbprint, parent_scope=scope, ca_signed=chain)
            yield target.creds(name, key=key, cert=cert, via_edge=True)
        else:
            if intermediate is not None:
                svc.create_enrollment_group(name, intermediate.cert_pem)
            else:
                svc.create_enrollment(name, symmetric_key=key, certificate_pem=certobj.cert_pem if certobj else None)
            assert target.dps is not None
            state = REGISTER[DPS_CLIENT[case.variant]](target.dps, target.registrant(name, key=key, cert=cert))
            assert state["deviceId"] == name, state
            yield target.creds(state["deviceId"], key=key, cert=cert)
    finally:
        svc.delete_device(name)
        if case.path == "dps" and chain:
            svc.delete_enrollment_group(name)
        elif case.path == "dps":
            svc.delete_enrollment(name)
