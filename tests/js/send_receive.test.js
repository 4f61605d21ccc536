'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('./harness');

const { Message } = h;
const m = h.useMeridian();

test('a message with tags, keys and user properties is received once, intact', { timeout: 60_000 }, async () => {
  const topic = await m.createTopic(h.uniq('T_basic'));
  const inbox = new h.Inbox();
  const consumer = await m.consumer({ consumerGroup: h.uniq('G_basic') });
  consumer.subscribe(topic, '*', inbox.handler);
  await consumer.ready();
  const producer = await m.producer();

  const textBody = 'hello meridian – ünïcødé ✓';
  const text = new Message(topic, 'TagA', textBody);
  text.keys = [ 'key-text', 'second-key' ];
  text.properties.color = 'blue';
  text.properties.orderNo = 'A-1001';
  text.properties.note = 'spaces and ünïcødé';

  // Over 4 KiB: ali-ons sends it zlib-compressed with sysFlag bit 0 set.
  const bigBody = Buffer.from(Array.from({ length: 600 },
    (_, i) => `line ${i} ${crypto.randomBytes(6).toString('hex')}`).join('\n'));
  const big = new Message(topic, 'TagB', Buffer.from(bigBody));
  big.keys = [ 'key-big' ];
  big.properties.size = 'large';

  const sentText = await producer.send(text);
  const sentBig = await producer.send(big);
  for (const r of [ sentText, sentBig ]) {
    assert.equal(r.sendStatus, 'SEND_OK');
    assert.match(String(r.msgId), /^[0-9A-F]{32,}$/i, 'send result carries a message id');
    assert.equal(r.messageQueue.topic, topic);
  }
  assert.notEqual(sentText.msgId, sentBig.msgId);

  await h.waitFor(() => inbox.withKey('key-text').length && inbox.withKey('key-big').length, {
    timeout: 30_000, what: 'both messages to arrive', diag: () => inbox.summary() + '\n' + m.diag(),
  });
  await h.sleep(1000);
  assert.equal(inbox.withKey('key-text').length, 1, 'text message delivered exactly once');
  assert.equal(inbox.withKey('key-big').length, 1, 'large message delivered exactly once');
  assert.equal(inbox.size, 2, 'nothing else delivered');

  const gotText = inbox.withKey('key-text')[0];
  assert.equal(gotText.topic, topic);
  assert.equal(gotText.body.toString('utf8'), textBody);
  assert.equal(gotText.tags, 'TagA');
  assert.equal(gotText.keys, 'key-text second-key');
  assert.equal(gotText.properties.color, 'blue');
  assert.equal(gotText.properties.orderNo, 'A-1001');
  assert.equal(gotText.properties.note, 'spaces and ünïcødé');
  assert.equal(gotText.reconsumeTimes, 0);
  assert.equal(gotText.msgId, sentText.msgId, 'consumer sees the id the send returned');
  assert.equal(Number(gotText.queueId), Number(sentText.messageQueue.queueId));
  assert.equal(gotText.queueOffset, sentText.queueOffset);

  const gotBig = inbox.withKey('key-big')[0];
  assert.equal(gotBig.topic, topic);
  assert.ok(gotBig.body.equals(bigBody), 'large (compressed) body intact');
  assert.equal(gotBig.tags, 'TagB');
  assert.equal(gotBig.properties.size, 'large');
  assert.equal(gotBig.msgId, sentBig.msgId);
});

test('sending to a topic that does not exist is rejected', { timeout: 30_000 }, async () => {
  const producer = await m.producer();
  await assert.rejects(producer.send(new Message(h.uniq('T_missing'), 'TagA', 'lost?')));
});
