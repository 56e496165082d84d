'use strict';
// Registry.addDevices, updateDevices and removeDevices: POST /devices with an array.

const crypto = require('node:crypto');
const { Registry } = require('azure-iothub');
const { assert, env, run } = require('./harness');

function key() {
  return crypto.randomBytes(32).toString('base64');
}

run(async () => {
  const registry = Registry.fromConnectionString(env('IOTHUB_CONNECTION_STRING'));
  const ids = ['node-bulk-1', 'node-bulk-2', 'node-bulk-3'];
  const added = await registry.addDevices(
    ids.map((deviceId) => ({ deviceId, status: 'disabled', authentication: { symmetricKey: { primaryKey: key(), secondaryKey: key() } } }))
  );
  assert.equal(added.responseBody.isSuccessful, true);
  assert.equal(added.responseBody.errors.length, 0);
  assert.equal((await registry.get(ids[1])).responseBody.status, 'disabled');

  const updated = await registry.updateDevices(ids.map((deviceId) => ({ deviceId, status: 'enabled' })), true);
  assert.equal(updated.responseBody.isSuccessful, true);
  assert.equal((await registry.get(ids[2])).responseBody.status, 'enabled');

  // A device that exists already: the whole answer is a 400 naming it.
  await assert.rejects(registry.addDevices([{ deviceId: ids[0] }]), (err) => {
    const body = JSON.parse(err.responseBody);
    assert.equal(body.isSuccessful, false);
    assert.deepEqual(body.errors.map((e) => [e.deviceId, e.errorCode]), [[ids[0], 'DeviceAlreadyExists']]);
    return true;
  });

  const removed = await registry.removeDevices(ids.map((deviceId) => ({ deviceId })), true);
  assert.equal(removed.responseBody.isSuccessful, true);
  for (const deviceId of ids) {
    await assert.rejects(registry.get(deviceId), (err) => err.constructor.name === 'DeviceNotFoundError');
  }
});
