'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');

const { Message } = h;
const m = h.useMeridian();

test('meridian admin finds a message sent by ali-ons by its id and by its key', { timeout: 60_000 }, async () => {
  const topic = await m.createTopic(h.uniq('T_query'));
  const key = h.uniq('qkey');
  const inbox = new h.Inbox();
  const consumer = await m.consumer({ consumerGroup: h.uniq('G_query') });
  consumer.subscribe(topic, '*', inbox.handler);
  await consumer.ready();
  const producer = await m.producer();

  const msg = new Message(topic, 'TagQ', 'query me');
  msg.keys = [ key ];
  msg.properties.purpose = 'lookup';
  const sent = await producer.send(msg);
  assert.equal(sent.sendStatus, 'SEND_OK');

  await h.waitFor(() => inbox.withKey(key).length, {
    timeout: 30_000, what: 'the message at the consumer', diag: () => inbox.summary() + '\n' + m.diag(),
  });
  assert.equal(inbox.withKey(key)[0].msgId, sent.msgId, 'the id from the send is the id the consumer sees');

  let byId;
  await h.waitFor(async () => {
    byId = await m.admin('queryMsgById', '-i', sent.msgId);
    return byId.code === 0 && byId.stdout.includes(topic);
  }, {
    timeout: 15_000, interval: 300, what: `queryMsgById -i ${sent.msgId}`,
    diag: () => `exit ${byId && byId.code}\nstdout: ${byId && byId.stdout}\nstderr: ${byId && byId.stderr}\n${m.diag()}`,
  });
  assert.ok(byId.stdout.includes(key), `queryMsgById output shows the key:\n${byId.stdout}`);
  assert.ok(byId.stdout.includes('TagQ'), `queryMsgById output shows the tag:\n${byId.stdout}`);

  let byKey;
  await h.waitFor(async () => {
    byKey = await m.admin('queryMsgByKey', '-t', topic, '-k', key);
    return byKey.code === 0 && h.adminShowsMessage(byKey.stdout, { key, msgId: sent.msgId, strict: true });
  }, {
    timeout: 15_000, interval: 300, what: `queryMsgByKey -t ${topic} -k ${key}`,
    diag: () => `exit ${byKey && byKey.code}\nstdout: ${byKey && byKey.stdout}\nstderr: ${byKey && byKey.stderr}\n${m.diag()}`,
  });
});
