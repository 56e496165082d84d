'use strict';
// azure-iothub's Client.send (AMQP) to a device with ack "full", then getFeedbackReceiver: waits
// for the feedback record of that message and prints its status before "ok". With EXPIRY_MS
// the message expires before any device takes it; with WEBSOCKET, over wss://…/$iothub/websocket.

const { Client, AmqpWs } = require('azure-iothub');
const { Message } = require('azure-iot-common');
const { env, run, waitFor } = require('./harness');

run(async () => {
  const client = process.env.WEBSOCKET
    ? Client.fromConnectionString(env('IOTHUB_CONNECTION_STRING'), AmqpWs)
    : Client.fromConnectionString(env('IOTHUB_CONNECTION_STRING'));
  await client.open();
  const records = [];
  const receiver = await new Promise((resolve, reject) => client.getFeedbackReceiver((err, r) => (err ? reject(err) : resolve(r))));
  receiver.on('message', (msg) => {
    for (const record of JSON.parse(msg.data.toString())) records.push(record);
    receiver.complete(msg, () => {});
  });
  const message = new Message('from node');
  message.messageId = env('MESSAGE_ID');
  message.ack = 'full';
  message.properties.add('origin', 'node');
  if (process.env.EXPIRY_MS) message.expiryTimeUtc = Date.now() + Number(process.env.EXPIRY_MS);
  await client.send(env('DEVICE_ID'), message);
  console.log('sent');
  await waitFor(() => records.some((r) => r.originalMessageId === message.messageId), 'the feedback record', 30000);
  const record = records.find((r) => r.originalMessageId === message.messageId);
  console.log(JSON.stringify(record));
  await client.close();
});
