'use strict';
// @azure/event-hubs reads the emulator's Event Hubs-compatible endpoint (the plain-TCP
// UseDevelopmentEmulator=true string): partition ids, partition properties, then every event of
// one partition from the earliest position, printed as JSON lines before "ok".

const { EventHubConsumerClient, earliestEventPosition } = require('@azure/event-hubs');
const { assert, env, run, waitFor } = require('./harness');

run(async () => {
  const client = new EventHubConsumerClient('$Default', env('EVENTHUB_CONNECTION_STRING'));
  const partition = env('PARTITION_ID');
  assert.deepEqual(await client.getPartitionIds(), ['0', '1', '2', '3']);
  const props = await client.getPartitionProperties(partition);
  const last = props.lastEnqueuedSequenceNumber;
  const got = [];
  const subscription = client.subscribe(
    partition,
    {
      processEvents: async (events) => { for (const e of events) got.push(e); },
      processError: async (err) => { console.error('error', err.message); },
    },
    { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1 }
  );
  await waitFor(() => got.length && got[got.length - 1].sequenceNumber >= last, `event ${last}`);
  await subscription.close();
  await client.close();
  for (const e of got) {
    console.log(JSON.stringify({ sequenceNumber: e.sequenceNumber, offset: String(e.offset), body: Buffer.isBuffer(e.body) ? e.body.toString() : e.body, deviceId: e.systemProperties['iothub-connection-device-id'] }));
  }
});
