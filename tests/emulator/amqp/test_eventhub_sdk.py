"""The unmodified azure-eventhub SDK (sync and async, AMQP over TLS, plain TCP and WebSocket)
reading device telemetry from the emulator's Event Hubs-compatible endpoint.

One emulator per module, with a data folder, so a restart keeps the events; each test sends its
own messages from its own device and reads them back where they landed.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from azure.eventhub import EventHubConsumerClient, TransportType
from azure.eventhub.aio import EventHubConsumerClient as AsyncConsumer
from azure.eventhub.exceptions import AuthenticationError, EventHubError

from azure_iot_harness.emulator.amqp.partitioning import partition_of
from azure_iot_harness.emulator.app import Emulator, EmulatorThread
from tests.helpers import https, sas_device, wait_for

GROUP2 = "analytics"


@pytest.fixture(scope="module")
def thread(tmp_path_factory):
    data = tmp_path_factory.mktemp("amqp")
    th = EmulatorThread(data_dir=data, mqtt_port=0, https_port=0, eventhub_consumer_groups=[GROUP2], eventhub_partitions=4)
    th.start()
    yield th
    th.stop()


@pytest.fixture
def emu(thread) -> Emulator:
    return thread.emulator


def _device(emu: Emulator) -> str:
    device = f"eh-{uuid.uuid4().hex[:8]}"
    status, _, _ = https(emu, "PUT", f"/devices/{device}?api-version=2021-04-12", {"deviceId": device})
    assert status == 200
    return device


def _send(emu: Emulator, device: str, count: int, *, props: str = "") -> None:
    dev = sas_device(emu, device)
    assert dev.connect() == 0
    mids = [dev.publish(f"devices/{device}/messages/events/{props}", f'{{"n": {i}}}') for i in range(count)]
    wait_for(lambda: set(mids) <= set(dev.acked), what="PUBACKs")
    dev.close()


def _tls_client(emu: Emulator, group: str = "$Default", **kw) -> EventHubConsumerClient:
    return EventHubConsumerClient.from_connection_string(
        emu.eventhub_connection_string(),
        consumer_group=group,
        connection_verify=str(emu.ca_file),
        custom_endpoint_address=f"sb://{emu.host}:{emu.amqp_port}",
        **kw,
    )


def _plain_client(emu: Emulator, group: str = "$Default", **kw) -> EventHubConsumerClient:
    return EventHubConsumerClient.from_connection_string(emu.eventhub_connection_string(emulator=True), consumer_group=group, **kw)


def _receive(client: EventHubConsumerClient, partition: str, want: int, **kw) -> list:
    got: list = []
    done = threading.Event()

    def on_event(ctx, event) -> None:
        if event is not None:
            got.append(event)
        if len(got) >= want:
            done.set()

    worker = threading.Thread(target=client.receive, kwargs={"on_event": on_event, "partition_id": partition, **kw}, daemon=True)
    worker.start()
    try:
        wait_for(done.is_set, 30, what=f"{want} events", seen=lambda: len(got))
    finally:
        client.close()
        worker.join(10)
    return got


def test_partitions_and_properties_over_tls(emu: Emulator) -> None:
    device = _device(emu)
    _send(emu, device, 3, props="k=v&%24.mid=mid-1&%24.ct=application%2Fjson&%24.ce=utf-8")
    client = _tls_client(emu)
    with client:
        assert client.get_partition_ids() == ["0", "1", "2", "3"]
        props = client.get_eventhub_properties()
        assert props["eventhub_name"] == emu.eventhub_name
        partition = str(partition_of(device, 4))
        info = client.get_partition_properties(partition)
        assert info["last_enqueued_sequence_number"] >= 2 and not info["is_empty"]
    events = _read_until(emu, partition, info["last_enqueued_sequence_number"], make=_tls_client, starting_position="-1")
    first = next(e for e in events if e.system_properties[b"iothub-connection-device-id"] == device.encode())
    assert first.body_as_str() == '{"n": 0}'
    assert first.properties == {b"k": b"v"}
    sysprops = first.system_properties
    assert sysprops[b"message-id"] == b"mid-1"
    assert sysprops[b"content-type"] == b"application/json"
    assert sysprops[b"content-encoding"] == b"utf-8"
    assert sysprops[b"iothub-message-source"] == b"Telemetry"
    assert b'"type":"sas"' in sysprops[b"iothub-connection-auth-method"]
    assert sysprops[b"iothub-connection-auth-generation-id"]
    assert isinstance(sysprops[b"iothub-enqueuedtime"], int)
    assert b"x-opt-partition-key" not in sysprops  # IoT Hub sets none


def _read_until(emu: Emulator, partition: str, last_sequence: int, make=None, **kw) -> list:
    got: list = []
    done = threading.Event()
    client = (make or _plain_client)(emu)

    def on_event(ctx, event) -> None:
        got.append(event)
        if event.sequence_number >= last_sequence:
            done.set()

    worker = threading.Thread(target=client.receive, kwargs={"on_event": on_event, "partition_id": partition, **kw}, daemon=True)
    worker.start()
    try:
        wait_for(done.is_set, 30, what=f"event {last_sequence}", seen=lambda: [e.sequence_number for e in got])
    finally:
        client.close()
        worker.join(10)
    return got


def _last(emu: Emulator, partition: str) -> dict:
    with _plain_client(emu) as client:
        return client.get_partition_properties(partition)


def test_every_starting_position(emu: Emulator) -> None:
    device = _device(emu)
    partition = str(partition_of(device, 4))
    _send(emu, device, 4)
    info = _last(emu, partition)
    last = info["last_enqueued_sequence_number"]
    everything = _read_until(emu, partition, last, starting_position="-1")
    assert [e.sequence_number for e in everything] == list(range(info["beginning_sequence_number"], last + 1))
    third = everything[-2]
    # by sequence number, exclusive and inclusive
    assert [e.sequence_number for e in _read_until(emu, partition, last, starting_position=third.sequence_number)] == [last]
    inclusive = _read_until(emu, partition, last, starting_position=third.sequence_number, starting_position_inclusive=True)
    assert [e.sequence_number for e in inclusive] == [last - 1, last]
    # by offset (a string), exclusive
    assert [e.sequence_number for e in _read_until(emu, partition, last, starting_position=third.offset)] == [last]
    # by enqueued time: everything from a moment before the last message
    by_time = _read_until(emu, partition, last, starting_position=everything[-1].enqueued_time, starting_position_inclusive=True)
    assert by_time[-1].sequence_number == last and all(e.enqueued_time >= everything[-1].enqueued_time for e in by_time)
    # @latest: only what comes after the receiver opened
    got: list = []
    client = _plain_client(emu)
    worker = threading.Thread(
        target=client.receive, kwargs={"on_event": lambda c, e: got.append(e), "partition_id": partition, "starting_position": "@latest"}, daemon=True
    )
    worker.start()
    try:
        wait_for(lambda: _attached(emu, partition), what="receiver attached")
        _send(emu, device, 1)
        wait_for(lambda: got, 30, what="the @latest event")
    finally:
        client.close()
        worker.join(10)
    assert [e.sequence_number for e in got] == [last + 1]


def _attached(emu: Emulator, partition: str) -> bool:
    return any(
        readers for (group, p), readers in emu.amqp.eventhub._readers.items() if p == int(partition)  # noqa: SLF001
    )


def test_async_client_and_two_consumer_groups(emu: Emulator) -> None:
    device = _device(emu)
    partition = str(partition_of(device, 4))
    _send(emu, device, 2)
    last = _last(emu, partition)["last_enqueued_sequence_number"]

    async def read(group: str) -> list[int]:
        client = AsyncConsumer.from_connection_string(emu.eventhub_connection_string(emulator=True), consumer_group=group)
        got: list[int] = []
        done = asyncio.Event()

        async def on_event(ctx, event) -> None:
            got.append(event.sequence_number)
            if event.sequence_number >= last:
                done.set()

        async with client:
            task = asyncio.ensure_future(client.receive(on_event=on_event, partition_id=partition, starting_position="-1"))
            await asyncio.wait_for(done.wait(), 30)
            await client.close()
            await asyncio.wait({task}, timeout=10)
        return got

    async def both() -> tuple[list[int], list[int]]:
        return await asyncio.gather(read("$Default"), read(GROUP2))

    default, analytics = asyncio.run(both())
    assert default == analytics and default[-1] == last


def test_websocket(emu: Emulator) -> None:
    device = _device(emu)
    partition = str(partition_of(device, 4))
    _send(emu, device, 1)
    last = _last(emu, partition)["last_enqueued_sequence_number"]
    client = EventHubConsumerClient.from_connection_string(
        emu.eventhub_connection_string(),
        consumer_group="$Default",
        transport_type=TransportType.AmqpOverWebsocket,
        connection_verify=str(emu.ca_file),
        custom_endpoint_address=f"https://{emu.host}:{emu.https_port}",
    )
    events = _read_until(emu, partition, last, make=lambda _: client, starting_position="-1")
    assert events[-1].sequence_number == last


def test_epoch_receiver_takes_the_partition(emu: Emulator) -> None:
    partition = "0"
    errors: list[Exception] = []
    first = _plain_client(emu)
    worker = threading.Thread(
        target=first.receive,
        kwargs={"on_event": lambda c, e: None, "on_error": lambda c, e: errors.append(e), "partition_id": partition, "owner_level": 1},
        daemon=True,
    )
    worker.start()
    try:
        wait_for(lambda: _attached(emu, partition), what="first receiver")
        second = _plain_client(emu)
        worker2 = threading.Thread(target=second.receive, kwargs={"on_event": lambda c, e: None, "partition_id": partition, "owner_level": 2}, daemon=True)
        worker2.start()
        wait_for(lambda: any("amqp:link:stolen" in str(e) for e in errors), 30, what="the first receiver stolen", seen=lambda: errors)
        second.close()
        worker2.join(10)
    finally:
        first.close()
        worker.join(10)


def test_bad_credentials_and_unknown_entities(emu: Emulator) -> None:
    wrong_key = emu.eventhub_connection_string(emulator=True).replace("SharedAccessKey=", "SharedAccessKey=x")
    with EventHubConsumerClient.from_connection_string(wrong_key, consumer_group="$Default", retry_total=0) as client, pytest.raises(AuthenticationError):
        client.get_partition_ids()
    no_permission = emu.eventhub_connection_string(emulator=True, policy="registryRead")
    with EventHubConsumerClient.from_connection_string(no_permission, consumer_group="$Default", retry_total=0) as client, pytest.raises(AuthenticationError):
        client.get_partition_ids()
    wrong_hub = emu.eventhub_connection_string(emulator=True).replace(f"EntityPath={emu.eventhub_name}", "EntityPath=nohub")
    with EventHubConsumerClient.from_connection_string(wrong_hub, consumer_group="$Default", retry_total=0) as client:
        with pytest.raises(EventHubError, match="Status code: 404"):
            client.get_partition_ids()
    # an unknown consumer group: the receiver's error callback gets Azure's answer (the SDK itself
    # refuses unknown partitions; test_protocol.py sends one)
    errors: list[Exception] = []
    client = _plain_client(emu, "nogroup", retry_total=0)
    worker = threading.Thread(
        target=client.receive, kwargs={"on_event": lambda c, e: None, "on_error": lambda c, e: errors.append(e), "partition_id": "0"}, daemon=True
    )
    worker.start()
    try:
        wait_for(lambda: errors, 30, what="an error for consumer group nogroup")
    finally:
        client.close()
        worker.join(10)
    assert "could not be found (no consumer group 'nogroup')" in str(errors[0])
    # the endpoint still serves the others
    with _plain_client(emu) as client:
        assert client.get_partition_ids() == ["0", "1", "2", "3"]


def test_events_survive_a_restart(thread: EmulatorThread) -> None:
    emu = thread.emulator
    device = _device(emu)
    partition = str(partition_of(device, 4))
    _send(emu, device, 2)
    before = [(e.sequence_number, e.offset, e.body_as_str()) for e in _read_until(emu, partition, _last(emu, partition)["last_enqueued_sequence_number"], starting_position="-1")]
    thread.call(emu.stop())
    thread.call(emu.start())
    after = [(e.sequence_number, e.offset, e.body_as_str()) for e in _read_until(emu, partition, before[-1][0], starting_position="-1")]
    assert after == before
