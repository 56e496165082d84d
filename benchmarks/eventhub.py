"""Reading telemetry back: events per second one azure-eventhub consumer reads from the
emulator's Event Hubs-compatible endpoint (AMQP, plain TCP), side by side with the emulator's
own `/_emulator/telemetry/stream` (NDJSON over HTTPS), both from the first of the same stored
messages of one device (one partition)."""

from __future__ import annotations

import http.client
import ssl
import threading
import time

from .clients import PahoLoad
from .context import Context
from .identities import identities
from .report import Row, Section
from .servers import running
from .stats import Samples

READ_TIMEOUT = 300.0


def run(ctx: Context) -> Section:
    section = Section("Reading telemetry")
    try:
        from azure.eventhub import EventHubConsumerClient
    except ImportError:
        section.not_measured.append("azure-eventhub is not installed (the test extra has it)")
        return section
    o = ctx.options
    amqp, stream = Samples(), Samples()
    with running([ctx.emulator("normal")], identities(1)) as (server,):
        load = PahoLoad(identities(1), server.port, server.ca_file, o.messages, b"x" * o.payload_bytes)
        load.connect()
        result = load.run()
        load.close()
        if result.error:
            section.not_measured.append(f"reading telemetry: the load failed ({result.error})")
            return section
        info = server.info
        device = identities(1)[0].device_id
        from azure_iot_harness.emulator.amqp.partitioning import partition_of

        partition = str(partition_of(device, len(info["eventHub"]["partitions"])))
        for rep in range(o.repeat):
            amqp.add(_read_amqp(EventHubConsumerClient, info["eventHub"]["emulatorConnectionString"], partition, o.messages))
            stream.add(_read_stream(server, device, o.messages))
            ctx.log(f"read #{rep + 1}: azure-eventhub {amqp.values[-1]:.0f} events/s, stream {stream.values[-1]:.0f} events/s")
    section.rows.append(
        Row("One azure-eventhub consumer (EventHubConsumerClient.receive, one partition)", "events/s", amqp, against="/_emulator/telemetry/stream", theirs=stream)
    )
    return section


def _read_amqp(client_class, connection_string: str, partition: str, count: int) -> float:
    client = client_class.from_connection_string(connection_string, consumer_group="$Default")
    got = 0
    done = threading.Event()
    first: list[float] = []

    def on_event(ctx, event) -> None:
        nonlocal got
        if not first:
            first.append(time.perf_counter())
        got += 1
        if got >= count:
            done.set()

    t0 = time.perf_counter()
    worker = threading.Thread(target=client.receive, kwargs={"on_event": on_event, "partition_id": partition, "starting_position": "-1", "prefetch": 300}, daemon=True)
    worker.start()
    done.wait(READ_TIMEOUT)
    seconds = time.perf_counter() - t0
    client.close()
    worker.join(30)
    return got / seconds


def _read_stream(server, device: str, count: int) -> float:
    ctx = ssl.create_default_context(cafile=str(server.ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", server.https_port, context=ctx, timeout=READ_TIMEOUT)
    t0 = time.perf_counter()
    conn.request("GET", f"/_emulator/telemetry/stream?after=0&deviceId={device}", headers={"Authorization": server.service_token})
    resp = conn.getresponse()
    got = 0
    while got < count:
        line = resp.readline()
        if not line:
            break
        if line.strip():
            got += 1
    seconds = time.perf_counter() - t0
    conn.close()
    return got / seconds
