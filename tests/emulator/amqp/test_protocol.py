"""What no well-behaved SDK sends, over a real AMQP client (proton's BlockingConnection on the
plain port): an unknown partition, an unreadable starting filter, an attach without a token,
and the IoT Hub-host form that IoT Hub redirects."""

from __future__ import annotations

import urllib.parse

import pytest
from proton import ConnectionException, symbol
from proton.reactor import Filter
from proton.utils import BlockingConnection, LinkDetached

from azure_iot_harness.emulator.app import Emulator, EmulatorThread
from azure_iot_harness.emulator.protocol import sas


@pytest.fixture(scope="module")
def emu():
    with EmulatorThread(in_memory=True, mqtt_port=0, https_port=0) as emulator:
        yield emulator


def _connect(emu: Emulator, *, token: bool = True) -> BlockingConnection:
    if token:
        policy = next(p for p in emu.policies if p.name == "service")
        user = urllib.parse.quote(f"service@sas.root.{emu.config.hub_name}", safe="")
        password = urllib.parse.quote(sas.generate(emu.host, policy.key, key_name="service"), safe="")
        url = f"amqp://{user}:{password}@127.0.0.1:{emu.amqp_plain_port}"
        return BlockingConnection(url, allowed_mechs="PLAIN", allow_insecure_mechs=True, timeout=10)
    return BlockingConnection(f"amqp://127.0.0.1:{emu.amqp_plain_port}", allowed_mechs="ANONYMOUS", timeout=10)


def _refusal(conn: BlockingConnection, address: str, **kw) -> LinkDetached:
    with pytest.raises(LinkDetached) as err:
        conn.create_receiver(address, **kw)
    return err.value


def test_unknown_partition_and_bad_filter(emu: Emulator) -> None:
    conn = _connect(emu)
    try:
        err = _refusal(conn, f"{emu.eventhub_name}/ConsumerGroups/$Default/Partitions/9")
        assert err.condition == "com.microsoft:argument-out-of-range"
        bad = Filter({symbol("apache.org:selector-filter:string"): "amqp.annotation.x-opt-offset > 'abc'"})
        err = _refusal(conn, f"{emu.eventhub_name}/ConsumerGroups/$Default/Partitions/0", options=bad)
        assert err.condition == "com.microsoft:argument-error"
        assert _refusal(conn, "no/such/node").condition == "amqp:not-found"
        # the connection still serves a good receiver
        conn.create_receiver(f"{emu.eventhub_name}/ConsumerGroups/$Default/Partitions/0").close()
    finally:
        conn.close()


def test_wrong_sasl_plain_credentials_fail_the_sasl_exchange(emu: Emulator) -> None:
    user = urllib.parse.quote(f"service@sas.root.{emu.config.hub_name}", safe="")
    key = next(p for p in emu.policies if p.name == "service").key
    wrong_key, expired = sas.generate(emu.host, "A" * 43 + "=", key_name="service"), sas.generate(emu.host, key, key_name="service", ttl=-60)
    for password in (wrong_key, expired, "not-the-key"):
        url = f"amqp://{user}:{urllib.parse.quote(password, safe='')}@127.0.0.1:{emu.amqp_plain_port}"
        with pytest.raises(ConnectionException) as err:
            BlockingConnection(url, allowed_mechs="PLAIN", allow_insecure_mechs=True, timeout=10)
        assert "amqp:unauthorized-access" in str(err.value) and "Authentication failed" in str(err.value)
    _connect(emu).close()  # the right ones still pass


def test_attach_without_a_token_is_unauthorized(emu: Emulator) -> None:
    conn = _connect(emu, token=False)
    try:
        assert _refusal(conn, f"{emu.eventhub_name}/ConsumerGroups/$Default/Partitions/0").condition == "amqp:unauthorized-access"
    finally:
        conn.close()


def test_iot_hub_form_is_redirected(emu: Emulator) -> None:
    conn = _connect(emu)
    try:
        err = _refusal(conn, "messages/events/ConsumerGroups/$Default/Partitions/0")
        assert err.condition == "amqp:link:redirect"
        info = {str(k): v for k, v in err.link.remote_condition.info.items()}
        assert info["hostname"] == emu.host and info["port"] == emu.amqp_plain_port
        assert info["address"] == f"amqps://{emu.host}:{emu.amqp_plain_port}/{emu.eventhub_name}/ConsumerGroups/$Default/Partitions/0"
    finally:
        conn.close()


def _c2d(conn: BlockingConnection, to: str, body: bytes) -> tuple[int, str | None]:
    from proton import Message

    sender = conn.create_sender("/messages/devicebound")
    dlv = sender.link.send(Message(address=to, body=body, id="m1"))
    conn.wait(lambda: dlv.settled, msg="the C2D disposition")
    condition = dlv.remote.condition
    sender.close()
    return dlv.remote_state, condition.name if condition else None


def test_c2d_refusals_carry_iot_hubs_conditions(emu: Emulator) -> None:
    from proton import Delivery

    conn = _connect(emu)
    try:
        assert _c2d(conn, "/devices/nobody/messages/devicebound", b"x") == (Delivery.REJECTED, "amqp:not-found")
        assert _c2d(conn, "/devices/device1/messages/devicebound", b"x" * (64 * 1024 + 1)) == (Delivery.REJECTED, "amqp:link:message-size-exceeded")
        assert _c2d(conn, "/devices/device1/twin", b"x") == (Delivery.REJECTED, "com.microsoft:argument-error")
        assert _c2d(conn, "/devices/device1/messages/devicebound", b"fine") == (Delivery.ACCEPTED, None)
        assert [m.body for m in emu.hub.c2d.pending("device1")] == [b"fine"]
    finally:
        conn.close()
