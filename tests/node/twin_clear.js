'use strict';
// The service clears every desired property with {"properties": {"desired": null}} (the service
// SDK's Twin.update, as its own end-to-end tests do); the device is told and ends up with none.

const { Registry } = require('azure-iothub');
const { Client } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { assert, env, members, run, waitFor } = require('./harness');

run(async () => {
  const registry = Registry.fromConnectionString(env('IOTHUB_CONNECTION_STRING'));
  const deviceId = env('DEVICE_ID');
  await registry.updateTwin(deviceId, { properties: { desired: { fan: 3, led: { on: true } } } }, '*');

  const client = Client.fromConnectionString(env('DEVICE_CONNECTION_STRING'), Mqtt);
  await client.open();
  const twin = await client.getTwin();
  assert.deepEqual(members(twin.properties.desired), { fan: 3, led: { on: true } });
  const seen = [];
  twin.on('properties.desired', (patch) => seen.push(patch.$version));

  const serviceTwin = (await registry.getTwin(deviceId)).responseBody;
  const before = serviceTwin.properties.desired.$version;
  await serviceTwin.update({ properties: { desired: null } });
  await waitFor(() => seen.includes(before + 1), `desired $version ${before + 1} on the device`);
  assert.deepEqual(members(twin.properties.desired), {});

  const after = (await registry.getTwin(deviceId)).responseBody.properties.desired;
  assert.equal(after.$version, before + 1);
  assert.deepEqual(members(after), {});
  await client.close();
});
