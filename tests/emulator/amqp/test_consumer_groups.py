"""Consumer groups of the Event Hubs-compatible endpoint through the management plane's routes,
with the unmodified management SDK (azure-mgmt-iothub); azure-eventhub reads through a group the
moment it exists; groups survive a restart; a deleted or unknown group is refused with
`amqp:not-found`."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import uuid

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.eventhub.aio import EventHubConsumerClient as AsyncConsumer
from azure.mgmt.iothub import IotHubClient
from azure.mgmt.iothub.models import EventHubConsumerGroupBodyDescription, EventHubConsumerGroupName
from proton.utils import BlockingConnection, LinkDetached

from azure_iot_harness.emulator.amqp.partitioning import partition_of
from azure_iot_harness.emulator.app import Emulator, EmulatorThread
from azure_iot_harness.emulator.protocol import sas
from tests.emulator.test_management_sdks import SasCredential
from tests.helpers import https, sas_device, wait_for


def _mgmt(emu: Emulator) -> IotHubClient:
    return IotHubClient(SasCredential(emu.service_token()), "sub", base_url=f"https://localhost:{emu.https_port}", connection_verify=str(emu.ca_file))


def _body(name: str) -> EventHubConsumerGroupBodyDescription:
    return EventHubConsumerGroupBodyDescription(properties=EventHubConsumerGroupName(name=name))


def _send(emu: Emulator) -> tuple[str, str]:
    device = f"cg-{uuid.uuid4().hex[:8]}"
    assert https(emu, "PUT", f"/devices/{device}?api-version=2021-04-12", {"deviceId": device})[0] == 200
    dev = sas_device(emu, device)
    assert dev.connect() == 0
    mid = dev.publish(f"devices/{device}/messages/events/", "through a new group")
    wait_for(lambda: mid in dev.acked, what="PUBACK")
    dev.close()
    return device, str(partition_of(device, len(emu.amqp.events.partition_ids)))


def _read_one(emu: Emulator, group: str, partition: str) -> str:
    async def read() -> str:
        client = AsyncConsumer.from_connection_string(emu.eventhub_connection_string(emulator=True), consumer_group=group)
        got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def on_event(ctx, event) -> None:
            if not got.done():
                got.set_result(event.body_as_str())

        async with client:
            task = asyncio.ensure_future(client.receive(on_event=on_event, partition_id=partition, starting_position="-1"))
            try:
                return await asyncio.wait_for(got, 30)
            finally:
                await client.close()
                task.cancel()  # receive() itself lingers after close()
                await asyncio.wait({task}, timeout=10)

    return asyncio.run(read())


def _connect(emu: Emulator) -> BlockingConnection:
    policy = next(p for p in emu.policies if p.name == "service")
    user = urllib.parse.quote(f"service@sas.root.{emu.config.hub_name}", safe="")
    password = urllib.parse.quote(sas.generate(emu.host, policy.key, key_name="service"), safe="")
    return BlockingConnection(f"amqp://{user}:{password}@127.0.0.1:{emu.amqp_plain_port}", allowed_mechs="PLAIN", allow_insecure_mechs=True, timeout=10)


def _refusal(emu: Emulator, group: str) -> str | None:
    """The condition a receiver on `group` is refused with (proton's client), None if attached."""
    conn = _connect(emu)
    try:
        conn.create_receiver(f"{emu.eventhub_name}/ConsumerGroups/{group}/Partitions/0").close()
        return None
    except LinkDetached as err:
        return err.condition
    finally:
        conn.close()


def test_groups_through_the_management_sdk(emulator: Emulator) -> None:
    client, hub = _mgmt(emulator), emulator.config.hub_name
    assert [g.name for g in client.iot_hub_resource.list_event_hub_consumer_groups("rg", hub, "events")] == ["$Default"]
    assert _refusal(emulator, "analytics") == "amqp:not-found"

    created = client.iot_hub_resource.create_event_hub_consumer_group("rg", hub, "events", "analytics", _body("analytics"))
    assert created.name == "analytics" and created.type == "Microsoft.Devices/IotHubs/EventHubEndpoints/ConsumerGroups"
    assert created.id.endswith(f"/IotHubs/{hub}/eventHubEndpoints/events/ConsumerGroups/analytics") and created.etag
    assert "created" in created.properties
    fetched = client.iot_hub_resource.get_event_hub_consumer_group("rg", hub, "events", "Analytics")  # names compare case-insensitively
    assert (fetched.name, fetched.etag) == ("analytics", created.etag)
    assert [g.name for g in client.iot_hub_resource.list_event_hub_consumer_groups("rg", hub, "events")] == ["$Default", "analytics"]

    # usable at once: azure-eventhub reads through it
    _, partition = _send(emulator)
    assert _read_one(emulator, "analytics", partition) == "through a new group"

    reading = _connect(emulator)
    receiver = reading.create_receiver(f"{emulator.eventhub_name}/ConsumerGroups/analytics/Partitions/{partition}")
    client.iot_hub_resource.delete_event_hub_consumer_group("rg", hub, "events", "analytics")
    try:  # the group's receivers are detached
        with pytest.raises(LinkDetached) as detached:
            while True:
                receiver.receive(timeout=10)  # the event sent above, then the detach
        assert detached.value.condition == "amqp:not-found"
    finally:
        reading.close()
    assert _refusal(emulator, "analytics") == "amqp:not-found"
    with pytest.raises(ResourceNotFoundError):
        client.iot_hub_resource.get_event_hub_consumer_group("rg", hub, "events", "analytics")
    with pytest.raises(ResourceNotFoundError):
        client.iot_hub_resource.delete_event_hub_consumer_group("rg", hub, "events", "analytics")
    assert _refusal(emulator, "$Default") is None


def test_bad_requests(emulator: Emulator) -> None:
    client, hub = _mgmt(emulator), emulator.config.hub_name
    with pytest.raises(HttpResponseError) as err:
        client.iot_hub_resource.create_event_hub_consumer_group("rg", hub, "events", "-bad-", _body("-bad-"))
    assert err.value.status_code == 400
    with pytest.raises(HttpResponseError) as err:
        client.iot_hub_resource.delete_event_hub_consumer_group("rg", hub, "events", "$Default")
    assert err.value.status_code == 400
    with pytest.raises(ResourceNotFoundError):
        client.iot_hub_resource.list_event_hub_consumer_groups("rg", hub, "operationsMonitoringEvents").next()
    # a PUT whose body does not name the group: IoT Hub's numeric code 400007
    base = f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Devices/IotHubs/{hub}/eventHubEndpoints/events/ConsumerGroups/x"
    status, _, body = https(emulator, "PUT", f"{base}?api-version=2023-06-30", {"properties": {}}, token=emulator.service_token())
    answer = body if isinstance(body, dict) else json.loads(body)
    assert status == 400 and answer["code"] == 400007 and answer["httpStatusCode"] == "BadRequest"
    # an older api-version takes a PUT without a body
    assert https(emulator, "PUT", f"{base}?api-version=2018-04-01", None, token=emulator.service_token())[0] == 200
    # no token: refused
    assert https(emulator, "GET", base.rsplit("/", 1)[0] + "?api-version=2023-06-30", token=False)[0] == 401


def test_created_groups_survive_a_restart(tmp_path) -> None:
    with EmulatorThread(data_dir=tmp_path, mqtt_port=0, https_port=0, eventhub_consumer_groups=["from-settings"]) as emu:
        client, hub = _mgmt(emu), emu.config.hub_name
        client.iot_hub_resource.create_event_hub_consumer_group("rg", hub, "events", "kept", _body("kept"))
        names = [g.name for g in client.iot_hub_resource.list_event_hub_consumer_groups("rg", hub, "events")]
        assert names == ["$Default", "from-settings", "kept"]
    with EmulatorThread(data_dir=tmp_path, mqtt_port=0, https_port=0) as emu:
        names = [g.name for g in _mgmt(emu).iot_hub_resource.list_event_hub_consumer_groups("rg", emu.config.hub_name, "events")]
        assert names == ["$Default", "kept"]
        assert _refusal(emu, "kept") is None and _refusal(emu, "from-settings") == "amqp:not-found"
