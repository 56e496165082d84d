"""DPS registration over raw MQTT, the device REST API and the official SDK."""

from __future__ import annotations

import pytest

from ..provisioning import REGISTER
from ..suite import cases

pytestmark = pytest.mark.azure_unvalidated


@pytest.mark.parametrize("case", cases(("dps-mqtt", "dps-rest", "dps-sdk"), paths=("dps",)))
def test_dps_registration(case, target):
    if target.dps is None:
        pytest.skip("this target has no DPS settings (DPS connection string and ID scope)")
    if case.variant == "dps-sdk" and target.sdk_reason:
        pytest.skip(target.sdk_reason.replace("azure-iot-device SDK", "azure-iot-device provisioning client"))
    import base64
    import os
    import uuid

    name = f"conf-{case.variant}-{case.auth}-{uuid.uuid4().hex[:6]}"
    key = base64.b64encode(os.urandom(32)).decode() if case.auth == "sas" else None
    cert, certobj = target.new_cert(name) if case.auth == "x509" else (None, None)
    svc = target.service
    svc.create_enrollment(name, symmetric_key=key, certificate_pem=certobj.cert_pem if certobj else None)
    try:
        state = REGISTER[case.variant.removeprefix("dps-")](target.dps, target.registrant(name, key=key, cert=cert))
        assert state["deviceId"] == name and state["assignedHub"], state
        device = svc.get_device(name)
        assert device["authentication"]["type"] == ("sas" if key else "selfSigned"), device["authentication"]
    finally:
        svc.delete_device(name)
        svc.delete_enrollment(name)
