'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');

const { Message } = h;
const m = h.useMeridian();

test('consumer offsets and unconsumed messages survive a broker restart', { timeout: 120_000 }, async () => {
  const topic = await m.createTopic(h.uniq('T_restart'));
  const group = h.uniq('G_restart');

  const before = new h.Inbox('before restart');
  const c1 = await m.consumer({ consumerGroup: group });
  c1.subscribe(topic, '*', before.handler);
  await c1.ready();
  const p1 = await m.producer();

  const consumed = [];
  for (let i = 0; i < 10; i++) {
    const body = `consumed-${i}`;
    consumed.push(body);
    await p1.send(new Message(topic, 'TagS', body));
  }
  await h.waitFor(() => before.hasAllBodies(consumed), {
    timeout: 30_000, what: 'the first batch before the restart', diag: () => before.summary() + '\n' + m.diag(),
  });
  await m.closeClient(c1);

  const pending = [];
  for (let i = 0; i < 6; i++) {
    const body = `pending-${i}`;
    pending.push(body);
    await p1.send(new Message(topic, 'TagS', body));
  }
  await m.closeClient(p1);

  await m.restart();
  await m.waitForRoute(topic);

  const p2 = await m.producer();
  const later = [];
  for (let i = 0; i < 6; i++) {
    const body = `after-${i}`;
    later.push(body);
    await p2.send(new Message(topic, 'TagS', body));
  }

  const after = new h.Inbox('after restart');
  const c2 = await m.consumer({ consumerGroup: group });
  c2.subscribe(topic, '*', after.handler);
  await c2.ready();

  const expected = [ ...pending, ...later ];
  await h.waitFor(() => after.hasAllBodies(expected), {
    timeout: 30_000, what: 'messages sent before and after the restart', diag: () => after.summary() + '\n' + m.diag(),
  });
  await h.sleep(1500);

  const counts = after.countByBody();
  const redelivered = consumed.filter(b => counts.has(b));
  assert.deepEqual(redelivered, [], 'messages consumed before the restart are not delivered again');
  for (const body of expected) assert.equal(counts.get(body), 1, `${body} delivered exactly once`);
  assert.equal(after.size, expected.length);
});
