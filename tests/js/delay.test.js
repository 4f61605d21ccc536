'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');

const { Message } = h;
const m = h.useMeridian();

test('a message with delayTimeLevel 1 arrives no earlier than 1 s after it was sent', { timeout: 60_000 }, async () => {
  const topic = await m.createTopic(h.uniq('T_delay'));
  const inbox = new h.Inbox();
  const consumer = await m.consumer({ consumerGroup: h.uniq('G_delay') });
  consumer.subscribe(topic, '*', inbox.handler);
  await consumer.ready();
  await h.waitFor(() => h.ownedQueues(consumer, topic) === 4, {
    timeout: 30_000, what: 'the consumer to pull all queues', diag: () => m.diag(),
  });
  const producer = await m.producer();

  const delayedKey = h.uniq('delayed');
  const nowKey = h.uniq('now');
  const delayed = new Message(topic, 'TagD', 'delayed body');
  delayed.keys = [ delayedKey ];
  delayed.properties.kind = 'delayed';
  delayed.delayTimeLevel = 1;
  const immediate = new Message(topic, 'TagN', 'immediate body');
  immediate.keys = [ nowKey ];

  const t0 = Date.now();
  const r = await producer.send(delayed);
  assert.equal(r.sendStatus, 'SEND_OK');
  await producer.send(immediate);

  await h.waitFor(() => inbox.withKey(delayedKey).length && inbox.withKey(nowKey).length, {
    timeout: 30_000, what: 'the delayed and the immediate message', diag: () => inbox.summary() + '\n' + m.diag(),
  });
  await h.sleep(500);

  const got = inbox.withKey(delayedKey);
  assert.equal(got.length, 1, 'delayed message delivered once');
  const d = got[0];
  const elapsed = d.receivedAt - t0;
  assert.ok(elapsed >= 1000, `delayed message arrived after ${elapsed} ms`);
  assert.equal(d.topic, topic, 'delivered under its real topic');
  assert.equal(d.body.toString(), 'delayed body');
  assert.equal(d.tags, 'TagD');
  assert.equal(d.properties.kind, 'delayed');

  const n = inbox.withKey(nowKey);
  assert.equal(n.length, 1);
  assert.ok(n[0].receivedAt < d.receivedAt, 'the undelayed message sent later arrived first');
});
