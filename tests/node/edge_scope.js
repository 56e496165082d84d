'use strict';
// An IoT Edge device created through the registry gets its deviceScope; a leaf device is placed
// under it by that scope.

const { Registry } = require('azure-iothub');
const { assert, env, run } = require('./harness');

run(async () => {
  const registry = Registry.fromConnectionString(env('IOTHUB_CONNECTION_STRING'));
  const edge = (await registry.create({ deviceId: 'node-edge', capabilities: { iotEdge: true } })).responseBody;
  assert.equal(edge.deviceScope, `ms-azure-iot-edge://node-edge-${edge.generationId}`);
  const leaf = (await registry.create({ deviceId: 'node-leaf', deviceScope: edge.deviceScope })).responseBody;
  assert.equal(leaf.deviceScope, edge.deviceScope);
  assert.deepEqual(leaf.parentScopes, [edge.deviceScope]);
  const twin = (await registry.getTwin('node-edge')).responseBody;
  assert.equal(twin.deviceScope, edge.deviceScope);
});
