'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');

const { Message } = h;
const m = h.useMeridian();

test('messages with the same sharding key go to one queue and are consumed in send order', { timeout: 60_000 }, async () => {
  const queues = 4;
  const topic = await m.createTopic(h.uniq('T_order'), { queues });
  const inbox = new h.Inbox();
  const consumer = await m.consumer({ consumerGroup: h.uniq('G_order'), parallelConsumeLimit: 1 });
  consumer.subscribe(topic, '*', inbox.handler);
  await consumer.ready();
  const producer = await m.producer();

  const first = h.shardingKeyForNonZeroQueue('order-a', queues);
  const second = h.shardingKeyForNonZeroQueue('order-b', queues, [ first.queueId ]);
  const streams = [ first, second ];
  const n = 25;
  const sent = new Map(streams.map(s => [ s.key, [] ]));
  for (let i = 0; i < n; i++) {
    for (const s of streams) {
      const msg = new Message(topic, 'TagO', `${s.key}#${i}`);
      msg.shardingKey = s.key;
      msg.properties.seq = String(i);
      const r = await producer.send(msg);
      sent.get(s.key).push(r);
    }
  }
  for (const s of streams) {
    const results = sent.get(s.key);
    const qids = new Set(results.map(r => Number(r.messageQueue.queueId)));
    assert.deepEqual([ ...qids ], [ s.queueId ], `all messages of ${s.key} were stored in queue ${s.queueId}`);
    for (let i = 1; i < results.length; i++) {
      assert.ok(results[i].queueOffset > results[i - 1].queueOffset, 'queue offsets increase in send order');
    }
  }

  const expected = streams.flatMap(s => Array.from({ length: n }, (_, i) => `${s.key}#${i}`));
  await h.waitFor(() => inbox.hasAllBodies(expected), {
    timeout: 30_000, what: 'all ordered messages', diag: () => inbox.summary() + '\n' + m.diag(),
  });
  await h.sleep(500);

  for (const s of streams) {
    const seen = inbox.bodies().filter(b => b.startsWith(`${s.key}#`));
    const want = Array.from({ length: n }, (_, i) => `${s.key}#${i}`);
    assert.deepEqual(seen, want, `stream ${s.key} consumed in order, each message once`);
  }
  assert.equal(inbox.size, expected.length);
});
