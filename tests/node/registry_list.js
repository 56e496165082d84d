'use strict';
// Registry.list() sends GET /devices/?api-version=… (with the trailing slash).

const { Registry } = require('azure-iothub');
const { assert, env, run } = require('./harness');

run(async () => {
  const registry = Registry.fromConnectionString(env('IOTHUB_CONNECTION_STRING'));
  const devices = (await registry.list()).responseBody;
  assert.ok(devices.some((d) => d.deviceId === env('DEVICE_ID')), JSON.stringify(devices.map((d) => d.deviceId)));
});
