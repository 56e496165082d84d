"""A link lives as long as a token covers it: when the token put on `$cbs` expires without a
renewal the link is detached with `amqp:unauthorized-access`; a put-token before expiry keeps
it. Shown with proton's client (which never judges expiry itself, so only the emulator can end
the link) and with azure-eventhub renewing through its credential, as back ends run for hours."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from azure.core.credentials import AzureSasCredential
from azure.eventhub import EventHubConsumerClient, TransportType
from proton import Message, Timeout
from proton.utils import BlockingConnection, LinkDetached

from azure_iot_harness.emulator.amqp.partitioning import partition_of
from azure_iot_harness.emulator.app import Emulator, EmulatorThread
from azure_iot_harness.emulator.protocol import sas
from tests.helpers import https, sas_device, wait_for

LIFETIME = 20  # seconds, of the SDK test's tokens


@pytest.fixture(scope="module")
def emu():
    with EmulatorThread(in_memory=True, mqtt_port=0, https_port=0) as emulator:
        yield emulator


def _token(emu: Emulator, ttl: int) -> str:
    key = next(p for p in emu.policies if p.name == "service").key
    return sas.generate(f"sb://{emu.host}/{emu.eventhub_name}", key, key_name="service", ttl=ttl)


def _device(emu: Emulator) -> tuple[str, str]:
    device = f"exp-{uuid.uuid4().hex[:8]}"
    assert https(emu, "PUT", f"/devices/{device}?api-version=2021-04-12", {"deviceId": device})[0] == 200
    return device, str(partition_of(device, len(emu.amqp.events.partition_ids)))


def _send(emu: Emulator, device: str, body: str) -> None:
    dev = sas_device(emu, device)
    assert dev.connect() == 0
    mid = dev.publish(f"devices/{device}/messages/events/", body)
    wait_for(lambda: mid in dev.acked, what="PUBACK")
    dev.close()


class _Cbs:
    """put-token over `$cbs` with proton's blocking client, as the SDKs do it."""

    def __init__(self, conn: BlockingConnection) -> None:
        self.sender = conn.create_sender("$cbs")
        self.replies = conn.create_receiver("$cbs")

    def put(self, emu: Emulator, token: str) -> int:
        props = {"operation": "put-token", "type": "servicebus.windows.net:sastoken", "name": f"sb://{emu.host}/{emu.eventhub_name}"}
        self.sender.send(Message(body=token, id=uuid.uuid4().hex, reply_to="$cbs", properties=props))
        reply = self.replies.receive(timeout=10)
        self.replies.accept()
        return int(reply.properties["status-code"])


def _connection(emu: Emulator) -> BlockingConnection:
    return BlockingConnection(f"amqp://127.0.0.1:{emu.amqp_plain_port}", allowed_mechs="ANONYMOUS", timeout=10)


def test_a_link_is_detached_when_its_token_expires(emu: Emulator) -> None:
    device, partition = _device(emu)
    conn = _connection(emu)
    try:
        cbs = _Cbs(conn)
        assert cbs.put(emu, _token(emu, 2)) == 200
        receiver = conn.create_receiver(f"{emu.eventhub_name}/ConsumerGroups/$Default/Partitions/{partition}", credit=10)
        started = time.monotonic()
        with pytest.raises(LinkDetached) as detached:
            while time.monotonic() - started < 15:
                try:
                    receiver.receive(timeout=0.5)  # nothing arrives; the detach ends the wait
                except Timeout:
                    continue
        assert detached.value.condition == "amqp:unauthorized-access"
        assert "expired" in str(detached.value).lower()
        # the connection stays: a new token lets a new link attach
        assert cbs.put(emu, _token(emu, 60)) == 200
        conn.create_receiver(f"{emu.eventhub_name}/ConsumerGroups/$Default/Partitions/{partition}", name="second").close()
    finally:
        conn.close()


def test_a_renewed_token_keeps_the_link(emu: Emulator) -> None:
    device, partition = _device(emu)
    conn = _connection(emu)
    try:
        cbs = _Cbs(conn)
        assert cbs.put(emu, _token(emu, 2)) == 200
        receiver = conn.create_receiver(f"{emu.eventhub_name}/ConsumerGroups/$Default/Partitions/{partition}", credit=10)
        assert cbs.put(emu, _token(emu, 60)) == 200  # before the first expires
        time.sleep(3)  # past the first token's expiry: nothing to await, the link must simply stay
        _send(emu, device, "after the first token")
        msg = receiver.receive(timeout=10)
        assert msg.body in (b"after the first token", "after the first token")
    finally:
        conn.close()


def test_azure_eventhub_renewing_through_its_credential_keeps_reading(emu: Emulator) -> None:
    """azure-eventhub re-puts its token when a tenth of its lifetime is left (whole seconds: 20 s
    is the shortest lifetime that leaves it a 2 s window under load); a credential that is never
    refreshed loses the link (the SDK also notices the expiry itself)."""
    device, partition = _device(emu)
    kept, lapsed = AzureSasCredential(_token(emu, LIFETIME)), AzureSasCredential(_token(emu, LIFETIME))
    got: dict[str, list[str]] = {"kept": [], "lapsed": []}
    errors: dict[str, list[BaseException]] = {"kept": [], "lapsed": []}
    clients = []
    for name, credential in (("kept", kept), ("lapsed", lapsed)):
        client = EventHubConsumerClient(emu.host, emu.eventhub_name, "$Default", credential, connection_verify=str(emu.ca_file),
                                        custom_endpoint_address=f"sb://{emu.host}:{emu.amqp_port}", transport_type=TransportType.Amqp,
                                        retry_total=0)
        clients.append(client)
        threading.Thread(target=client.receive, daemon=True, kwargs={
            "on_event": lambda ctx, event, n=name: got[n].append(event.body_as_str()),
            "on_error": lambda ctx, error, n=name: errors[n].append(error),
            "partition_id": partition, "starting_position": "@latest",
        }).start()  # fmt: skip
    stop = threading.Event()

    def refresh() -> None:  # what an application's credential does: always a fresh token at hand
        while not stop.wait(1):
            kept.update(_token(emu, LIFETIME))

    threading.Thread(target=refresh, daemon=True).start()
    try:
        wait_for(lambda: errors["lapsed"], timeout=LIFETIME + 20, what="the unrenewed consumer's error")
        _send(emu, device, "still reading")
        wait_for(lambda: got["kept"], timeout=15, what="the renewed consumer's event")
        assert got["kept"] == ["still reading"] and not errors["kept"], errors["kept"]
        assert not got["lapsed"]
    finally:
        stop.set()
        for client in clients:
            client.close()
