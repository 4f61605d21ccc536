'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');

const { Message } = h;
const m = h.useMeridian();

test("subscription 'TagA || TagB' receives only TagA and TagB messages", { timeout: 60_000 }, async () => {
  const topic = await m.createTopic(h.uniq('T_tags'));
  const inbox = new h.Inbox();
  const consumer = await m.consumer({ consumerGroup: h.uniq('G_tags') });
  consumer.subscribe(topic, 'TagA || TagB', inbox.handler);
  await consumer.ready();
  const producer = await m.producer();

  const tags = [ 'TagA', 'TagB', 'TagC', 'TagD' ];
  const expected = [];
  for (let i = 0; i < 12; i++) {
    const tag = tags[i % tags.length];
    const body = `${tag}-${i}`;
    await producer.send(new Message(topic, tag, body));
    if (tag === 'TagA' || tag === 'TagB') expected.push(body);
  }

  // A final TagA after unwanted tags on one queue: once it has been consumed,
  // everything before it on that queue has been through the filter.
  const { key: shard } = h.shardingKeyForNonZeroQueue('tags');
  for (const [ tag, body ] of [ [ 'TagC', 'TagC-q' ], [ 'TagD', 'TagD-q' ], [ 'TagA', 'TagA-final' ] ]) {
    const msg = new Message(topic, tag, body);
    msg.shardingKey = shard;
    await producer.send(msg);
  }
  expected.push('TagA-final');

  await h.waitFor(() => inbox.hasAllBodies(expected), {
    timeout: 30_000, what: 'all TagA/TagB messages', diag: () => inbox.summary() + '\n' + m.diag(),
  });
  await h.sleep(1000);

  const counts = inbox.countByBody();
  const unwanted = inbox.msgs.filter(x => x.tags !== 'TagA' && x.tags !== 'TagB');
  assert.deepEqual(unwanted.map(x => `${x.tags}:${x.body}`), [], 'no TagC/TagD message delivered');
  for (const body of expected) {
    assert.equal(counts.get(body), 1, `${body} delivered exactly once`);
  }
  assert.equal(inbox.size, expected.length);
});
