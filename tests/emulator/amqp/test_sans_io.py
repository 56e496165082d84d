"""The AMQP package's sans-IO parts: frame padding, the SASL front end, partitioning, starting
positions, address routing and CBS claims. No sockets."""

from __future__ import annotations

import struct
import time

import pytest
from azure.eventhub._buffered_producer._partition_resolver import generate_hash_code  # the SDK's own port of the hash

from azure_iot_harness.config import WELL_KNOWN_POLICIES
from azure_iot_harness.emulator.amqp import addresses, positions
from azure_iot_harness.emulator.amqp.claims import plain_claim, token_claim
from azure_iot_harness.emulator.amqp.framing import AMQP_HEADER, SASL_HEADER, OutputFramer, pad_performative
from azure_iot_harness.emulator.amqp.partitioning import hash_code, partition_of
from azure_iot_harness.emulator.amqp.sasl import PlainRefused, SaslError, SaslFrontEnd, outcome_frame
from azure_iot_harness.emulator.protocol import sas
from azure_iot_harness.errors import ServiceError

SERVICE = next(p for p in WELL_KNOWN_POLICIES if p.name == "service")
REGISTRY_READ = next(p for p in WELL_KNOWN_POLICIES if p.name == "registryRead")


def _frame(body: bytes, ftype: int = 0) -> bytes:
    return struct.pack(">IBBH", 8 + len(body), 2, ftype, 0) + body


def test_short_performatives_are_padded_with_nulls() -> None:
    detach = _frame(bytes([0x00, 0x53, 0x16, 0xC0, 0x02, 0x01, 0x43]))  # detach with only `handle`
    padded = pad_performative(detach)
    assert padded[8:] == bytes([0x00, 0x53, 0x16, 0xC0, 0x04, 0x03, 0x43, 0x40, 0x40])
    assert struct.unpack(">I", padded[:4])[0] == len(padded)
    full = _frame(bytes([0x00, 0x53, 0x16, 0xC0, 0x04, 0x03, 0x43, 0x40, 0x40]))
    assert pad_performative(full) == full
    assert pad_performative(_frame(b"\x00\x53\x41\x45", ftype=1)) == _frame(b"\x00\x53\x41\x45", ftype=1)  # SASL frames stay


def test_the_framer_waits_for_whole_frames() -> None:
    framer = OutputFramer()
    detach = _frame(bytes([0x00, 0x53, 0x16, 0xC0, 0x02, 0x01, 0x43]))
    assert framer.feed(AMQP_HEADER[:4]) == b""
    assert framer.feed(AMQP_HEADER[4:] + detach[:5]) == AMQP_HEADER
    assert framer.feed(detach[5:]) == pad_performative(detach)


def _sasl_init(mechanism: str, response: bytes | None) -> bytes:
    from proton import Data, Described, symbol, ulong

    data = Data()
    data.put_object(Described(ulong(0x41), [symbol(mechanism), response]))
    return _frame(bytes(data.encode()), ftype=1)


def test_sasl_plain_then_amqp() -> None:
    front = SaslFrontEnd()
    front.feed(SASL_HEADER)
    out = front.output()
    assert out.startswith(SASL_HEADER) and b"MSSBCBS" in out and b"PLAIN" in out and b"EXTERNAL" not in out
    front.feed(_sasl_init("PLAIN", b"\0service@sas.root.hub\0SharedAccessSignature sr=x") + AMQP_HEADER + b"rest")
    assert front.result is not None and front.result.mechanism == "PLAIN"
    assert front.result.username == "service@sas.root.hub" and front.result.password == "SharedAccessSignature sr=x"
    assert front.output().endswith(b"\x00\x53\x44\xc0\x02\x01\x50\x00") or front.result is not None
    assert front.remainder == AMQP_HEADER + b"rest"


def test_sasl_plain_judged_in_the_exchange() -> None:
    def judge(user: str, password: str) -> str:
        if password != "right":
            raise PlainRefused("wrong")
        return "granted"

    front = SaslFrontEnd(judge)
    front.feed(SASL_HEADER + _sasl_init("PLAIN", b"\0service@sas.root.hub\0right") + AMQP_HEADER)
    assert front.result is not None and front.result.grant == "granted"
    front = SaslFrontEnd(judge)
    front.feed(SASL_HEADER)
    with pytest.raises(SaslError) as err:
        front.feed(_sasl_init("PLAIN", b"\0service@sas.root.hub\0wrong"))
    assert err.value.answer == outcome_frame(1) and err.value.answer.endswith(b"\x50\x01")  # sasl-outcome, code 1 (auth)
    front = SaslFrontEnd(judge)
    front.feed(SASL_HEADER + _sasl_init("ANONYMOUS", None) + AMQP_HEADER)  # nothing to judge: CBS follows
    assert front.result is not None and front.result.grant is None


def test_sasl_skipped_and_refused() -> None:
    front = SaslFrontEnd()
    front.feed(AMQP_HEADER)  # the Node service SDK: no SASL at all
    assert front.result is not None and front.result.mechanism is None and front.remainder == AMQP_HEADER
    with pytest.raises(SaslError) as err:
        SaslFrontEnd().feed(b"HTTP/1.1")
    assert err.value.answer == SASL_HEADER


@pytest.mark.parametrize("key", ["device1", "x509-device1", "a", "", "twelve-chars", "thirteen-char", "a-much-longer-device-identifier-42"])
def test_partition_hash_matches_the_sdks_port(key: str) -> None:
    assert hash_code(key) == generate_hash_code(key)


def test_partition_uses_the_absolute_remainder() -> None:
    negative = next(k for k in (f"d{i}" for i in range(100)) if hash_code(k) < 0 and hash_code(k) % 4 != 0)
    assert partition_of(negative, 4) == abs(hash_code(negative)) % 4  # C#'s |h % n|, not Python's h % n


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("amqp.annotation.x-opt-offset > '-1'", positions.EARLIEST),
        ("amqp.annotation.x-opt-offset > '@latest'", positions.Position("latest")),
        ("amqp.annotation.x-opt-offset >= '12'", positions.Position("offset", 12, True)),
        ("amqp.annotation.x-opt-sequence-number > '5'", positions.Position("sequence", 5, False)),
        ("amqp.annotation.x-opt-enqueued-time > '1700000000000'", positions.Position("time", 1700000000000, False)),
        ("amqp.annotation.x-opt-enqueuedtimeutc > 1700000000000", positions.Position("time", 1700000000000, False)),
    ],
)
def test_positions(expression: str, expected: positions.Position) -> None:
    assert positions.parse(expression) == expected


def test_bad_positions() -> None:
    for bad in ("amqp.annotation.x-opt-offset > 'abc'", "select * from x", "amqp.annotation.x-opt-foo > '1'"):
        with pytest.raises(positions.PositionError):
            positions.parse(bad)


def test_addresses() -> None:
    node = addresses.classify("amqps://host:5671/hub/ConsumerGroups/$Default/Partitions/3")
    assert (node.kind, node.entity, node.consumer_group, node.partition) == ("partition", "hub", "$Default", "3")
    assert addresses.classify("/messages/serviceBound/feedback").kind == "feedback"
    assert addresses.classify("amqps://h/messages/devicebound").kind == "devicebound"
    assert addresses.classify("messages/events/ConsumerGroups/$Default/Partitions/0").kind == "events"
    assert addresses.classify("hub/$management").entity == "hub"
    assert addresses.classify("$cbs").kind == "cbs"
    assert addresses.classify("something/else").kind == "unknown"
    assert addresses.device_of("/devices/dev%201/messages/devicebound") == "dev 1"
    assert addresses.device_of("/devices/dev 1/messages/devicebound") == "dev 1"
    assert addresses.device_of("/devices/x/twin") is None


def test_claims_accept_both_key_forms_and_cover_by_path() -> None:
    now = time.time()
    iot = sas.generate("hub.example/hub", SERVICE.key, key_name="service")  # base64-decoded key
    claim = token_claim(iot, hub_host="hub.example", policies=WELL_KNOWN_POLICIES, now=now)
    assert claim.covers("hub/ConsumerGroups/$Default/Partitions/0", "ServiceConnect", now)
    assert not claim.covers("other/ConsumerGroups/$Default/Partitions/0", "ServiceConnect", now)
    # the Event Hubs SDKs sign with the key's text
    import base64
    import hashlib
    import hmac
    import urllib.parse

    sr = urllib.parse.quote("sb://hub.example/hub", safe="")
    se = int(now) + 600
    sig = base64.b64encode(hmac.new(SERVICE.key.encode(), f"{sr}\n{se}".encode(), hashlib.sha256).digest()).decode()
    raw = f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={se}&skn=service"
    assert token_claim(raw, hub_host="hub.example", policies=WELL_KNOWN_POLICIES, now=now).path == ("hub",)


def test_claims_refuse_like_the_rest_api() -> None:
    now = time.time()
    cases = {
        "expired": sas.generate("hub.example", SERVICE.key, key_name="service", expiry=int(now) - 1),
        "wrong key": sas.generate("hub.example", REGISTRY_READ.key, key_name="service"),
        "no permission": sas.generate("hub.example", REGISTRY_READ.key, key_name="registryRead"),
        "other host": sas.generate("other.example", SERVICE.key, key_name="service"),
    }
    for what, token in cases.items():
        with pytest.raises(ServiceError) as err:
            token_claim(token, hub_host="hub.example", policies=WELL_KNOWN_POLICIES, now=now)
        assert err.value.status == 401, what
    assert plain_claim("service", SERVICE.key, hub_host="hub.example", policies=WELL_KNOWN_POLICIES, now=now).path == ()
    with pytest.raises(ServiceError):
        plain_claim("service", "wrong", hub_host="hub.example", policies=WELL_KNOWN_POLICIES, now=now)
