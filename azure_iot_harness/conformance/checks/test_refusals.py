"""IoT Hub's refusals as each variant experiences them: a CONNACK code, or a closed connection."""

from __future__ import annotations

import pytest

from ..suite import cases
from ..variants import PahoSession, Refused, open_session
from .devices import provisioned

pytestmark = pytest.mark.azure_unvalidated
PAHO = cases(("paho",), paths=("direct",))


@pytest.mark.parametrize("case", PAHO)
def test_refuses_qos2_publish(case, target):
    with provisioned(case, target, "qos2") as creds:
        s = PahoSession(creds).connect()
        try:
            assert not s.publish(f"devices/{creds.device_id}/messages/events/", "x", qos=2), "QoS 2 publish was acknowledged"
            assert s.closed.wait(10), "the hub kept the connection open after a QoS 2 publish"
        finally:
            s.close()


@pytest.mark.parametrize("case", PAHO)
def test_refuses_foreign_topic(case, target):
    with provisioned(case, target, "foreign") as creds:
        s = PahoSession(creds).connect()
        try:
            assert not s.publish("devices/someone-else/messages/events/", "x"), "a foreign device's topic was acknowledged"
            assert s.closed.wait(10)
        finally:
            s.close()


@pytest.mark.parametrize("case", cases(("paho", "sdk"), auths=("sas",), paths=("direct",)))
def test_refuses_bad_token(case, target):
    with provisioned(case, target, "badtoken") as creds:
        wrong = creds.__class__(**{**creds.__dict__, "key": "d3JvbmcgMzIgYnl0ZXMgb2Yga2V5IG1hdGVyaWFsIQ=="})
        with pytest.raises(Refused) as refused:
            if case.variant == "paho":
                PahoSession(wrong).connect().close()
            else:
                if target.sdk_reason:
                    pytest.skip(target.sdk_reason)
                open_session("sdk", wrong).close()
        assert refused.value.code in (4, 5), str(refused.value)


@pytest.mark.parametrize("case", cases(("paho",), auths=("x509",), paths=("direct",)))
def test_refuses_wrong_certificate(case, target):
    with provisioned(case, target, "wrongcert") as creds:
        other, _ = target.new_cert(creds.device_id + "-other")
        with pytest.raises(Refused) as refused:
            PahoSession(creds, cert=other).connect().close()
        assert refused.value.code == 5, str(refused.value)


@pytest.mark.parametrize("case", cases(("paho",), auths=("sas",), paths=("direct",)))
def test_refuses_mqtt_3_1(case, target):
    import paho.mqtt.client as mqtt

    with provisioned(case, target, "mqtt31") as creds:
        with pytest.raises(Refused) as refused:
            PahoSession(creds, protocol=mqtt.MQTTv31).connect().close()
        assert refused.value.code == 1, str(refused.value)
