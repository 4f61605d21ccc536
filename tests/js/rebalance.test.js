'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');

const { Message } = h;
const m = h.useMeridian();

test('two consumers of a group split the queues; after one closes the other gets everything, once', { timeout: 90_000 }, async () => {
  const topic = await m.createTopic(h.uniq('T_rebal'), { queues: 4 });
  const group = h.uniq('G_rebal');
  const inboxA = new h.Inbox('A');
  const inboxB = new h.Inbox('B');
  const a = await m.consumer({ consumerGroup: group });
  a.subscribe(topic, '*', inboxA.handler);
  const b = await m.consumer({ consumerGroup: group });
  b.subscribe(topic, '*', inboxB.handler);
  await Promise.all([ a.ready(), b.ready() ]);
  const diag = () => `${inboxA.summary()}\n${inboxB.summary()}\nA owns ${h.ownedQueues(a, topic)}, B owns ${h.ownedQueues(b, topic)}\n${m.diag()}`;

  await h.waitFor(() => h.ownedQueues(a, topic) === 2 && h.ownedQueues(b, topic) === 2, {
    timeout: 30_000, what: 'each consumer to own 2 of the 4 queues', diag,
  });

  const producer = await m.producer();
  const phase1 = [];
  for (let i = 0; i < 20; i++) {
    const body = `p1-${i}`;
    phase1.push(body);
    await producer.send(new Message(topic, 'TagR', body));
  }
  const union = () => [ ...inboxA.bodies(), ...inboxB.bodies() ];
  await h.waitFor(() => phase1.every(x => union().includes(x)), {
    timeout: 30_000, what: 'phase 1 messages to arrive at the group', diag,
  });
  await h.sleep(1000);

  assert.ok(inboxA.size > 0, 'consumer A received a share');
  assert.ok(inboxB.size > 0, 'consumer B received a share');
  const queuesA = new Set(inboxA.msgs.map(x => x.queueId));
  const queuesB = new Set(inboxB.msgs.map(x => x.queueId));
  for (const q of queuesA) assert.ok(!queuesB.has(q), `queue ${q} consumed by both instances`);

  await m.closeClient(a);
  await h.waitFor(() => h.ownedQueues(b, topic) === 4, {
    timeout: 30_000, what: 'the remaining consumer to own all 4 queues', diag,
  });

  const phase2 = [];
  for (let i = 0; i < 20; i++) {
    const body = `p2-${i}`;
    phase2.push(body);
    await producer.send(new Message(topic, 'TagR', body));
  }
  await h.waitFor(() => inboxB.hasAllBodies(phase2), {
    timeout: 30_000, what: 'phase 2 messages to arrive at the remaining consumer', diag,
  });
  await h.sleep(1000);

  const counts = new Map();
  for (const body of union()) counts.set(body, (counts.get(body) || 0) + 1);
  for (const body of [ ...phase1, ...phase2 ]) {
    assert.equal(counts.get(body), 1, `${body} delivered exactly once across the group`);
  }
  assert.equal(counts.size, phase1.length + phase2.length, 'nothing unexpected delivered');
});
