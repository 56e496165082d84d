// A conformant device on the official Node.js device SDK (azure-iot-device with the
// azure-iot-device-mqtt transport, unmodified, from npm): a small sample app reading certify's
// environment. The SDK connects, renews its token, retries with exponential back-off and jitter,
// completes C2D messages and answers the methods registered with onDeviceMethod; the app GETs the
// twin, reports each desired change back and sends JSON telemetry every interval.
'use strict';

const fs = require('fs');
const { Client, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const env = process.env;
const methods = (env.AZURE_IOT_CERTIFY_METHODS || '').split(',').filter((m) => m);
const interval = 1000 * parseFloat(env.AZURE_IOT_CERTIFY_TELEMETRY_INTERVAL || '5');
const client = Client.fromConnectionString(env.AZURE_IOT_CERTIFY_CONNECTION_STRING, Mqtt);
const log = (text) => console.log(`${new Date().toISOString()} ${text}`);

client.setOptions({ ca: fs.readFileSync(env.AZURE_IOT_CERTIFY_CA_FILE, 'utf8'), keepalive: 30 });
client.on('message', (msg) => {
  log(`C2D: ${msg.getData().toString().slice(0, 80)}`);
  client.complete(msg, () => {});
});
client.on('error', (err) => log(`error: ${err.message}`));
client.on('disconnect', () => log('disconnected (the SDK reconnects)'));
for (const name of methods) {
  client.onDeviceMethod(name, (request, response) => response.send(200, { result: `${name} done` }, () => {}));
}

function report(twin, desired) {
  const patch = {};
  for (const [key, value] of Object.entries(desired)) {
    if (!key.startsWith('$')) patch[key] = value;
  }
  if (Object.keys(patch).length) twin.properties.reported.update(patch, (err) => err && log(`report failed: ${err.message}`));
}

let seq = 0;
client.open((err) => {
  if (err) {
    log(`open failed: ${err.message}`);
    process.exit(1);
  }
  log('connected');
  client.getTwin((twinErr, twin) => {
    if (twinErr) return log(`twin failed: ${twinErr.message}`);
    twin.on('properties.desired', (delta) => report(twin, delta));
  });
  setInterval(() => {
    seq += 1;
    const message = new Message(JSON.stringify({ seq }));
    message.contentType = 'application/json';
    message.contentEncoding = 'utf-8';
    client.sendEvent(message, (sendErr) => sendErr && log(`send failed: ${sendErr.message}`));
  }, interval);
});

process.on('SIGTERM', () => client.close(() => process.exit(0)));
