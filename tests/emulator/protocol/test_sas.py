import time
import urllib.parse

import pytest

from azure_iot_harness.emulator.protocol import sas
from azure_iot_harness.errors import SasTokenError

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def test_reference_vectors():
    assert sas.sign(KEY, "myhub.azure-devices.net%2Fdevices%2Fdev1", 1900000000) == "2/bbVukbBxhdR4aRdJgLLhQzyetTcv8yWMS4N9W7HVY="
    assert sas.sign(KEY, "0ne00000001%2Fregistrations%2Fdev1", 1900000000) == "bgXho5V9NEh1cvE7Lc0sV3+3oN9OToIsjEK3T6V2/kU="
    assert sas.derive_device_key(KEY, "dev1") == "jgNHkpsSyy5knqEYC62lGiPQlRRClkZht9bpLre3fa0="


def test_generated_token_verifies_and_names_its_audience():
    token = sas.parse(sas.generate("hub.example/devices/d1", KEY, key_name="device"))
    assert token.verify(KEY)
    assert token.resource == "hub.example/devices/d1"
    assert token.key_name == "device"
    assert not token.expired()


@pytest.mark.parametrize("sr", ["hub%2fdevices%2fd1", "hub%2Fdevices%2Fd1", "hub/devices/d1", "hub%3A8883%2Fdevices%2Fd1"])
def test_signature_is_checked_over_sr_exactly_as_sent(sr):
    se = int(time.time()) + 60
    sig = urllib.parse.quote(sas.sign(KEY, sr, se), safe="")
    token = sas.parse(f"SharedAccessSignature sr={sr}&sig={sig}&se={se}")
    assert token.verify(KEY)
    # The same signature over another spelling of the same audience does not verify.
    other = sr.swapcase() if "%" in sr else sr.replace("/", "%2F")
    assert not sas.parse(f"SharedAccessSignature sr={other}&sig={sig}&se={se}").verify(KEY)


def test_fields_in_any_order():
    se = int(time.time()) + 60
    sig = urllib.parse.quote(sas.sign(KEY, "h%2Fdevices%2Fd", se), safe="")
    token = sas.parse(f"SharedAccessSignature se={se}&skn=&sig={sig}&sr=h%2Fdevices%2Fd")
    assert token.verify(KEY) and token.key_name is None


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("sr=a&sig=b&se=1", "does not start"),
        ("SharedAccessSignature sr=a&sig=AAAA&se=1&foo=bar", "unknown SAS token field 'foo'"),
        ("SharedAccessSignature sr=a&sig=AAAA", "lacks se"),
        ("SharedAccessSignature sr=a&sr=a&sig=AAAA&se=1", "given twice"),
        ("SharedAccessSignature sr=a&sig=%%%&se=1", "not valid base64"),
        ("SharedAccessSignature sr=a&sig=AAAA&se=soon", "not an integer"),
        ("SharedAccessSignature sr=a&sig=AAAA&se=1" + "0" * 400, "not an integer"),
        ("SharedAccessSignature sr=a&sig=AAAA&se=253402300800", "outside"),  # after 9999-12-31
        ("SharedAccessSignature sr=a&sig=AAAA&se=-1", "outside"),
        ("SharedAccessSignature sr=a&sig=AAAA&se=+1700000000", "not an integer"),
        ("SharedAccessSignature sr=a&sig=AAAA&se=\u0661\u0667", "not an integer"),  # Arabic-Indic digits
        ("SharedAccessSignature sr=a&sig=AAAA&se=1", "wrong length"),
        ("SharedAccessSignature sr=a&garbage&se=1", "malformed"),
    ],
)
def test_malformed_tokens_are_refused_with_a_reason(text, reason):
    with pytest.raises(SasTokenError, match=reason):
        sas.parse(text)


def test_expired():
    token = sas.parse(sas.generate("h/devices/d", KEY, expiry=int(time.time()) - 1))
    assert token.expired()


@pytest.mark.parametrize(
    "resource, path, expected",
    [
        ("HUB:8883/devices/d1", ["devices", "d1"], True),
        ("hub/devices", ["devices", "d1"], True),
        ("hub", ["devices", "d1"], True),
        ("hub/devices/d", ["devices", "d1"], False),  # prefixes go by whole segment
        ("hub/devices/d1/modules/m", ["devices", "d1"], False),
        ("other/devices/d1", ["devices", "d1"], False),
        ("hub/devices/a%2Fb", ["devices", "a/b"], True),  # ids escaped once more inside the audience
    ],
)
def test_covers(resource, path, expected):
    assert sas.covers(resource, "hub", path) is expected
