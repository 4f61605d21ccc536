'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');

const { Message } = h;
const m = h.useMeridian();

test('broadcast: every instance of the group receives every message once', { timeout: 60_000 }, async () => {
  const topic = await m.createTopic(h.uniq('T_bcast'));
  const group = h.uniq('G_bcast');
  const inboxes = [ new h.Inbox('one'), new h.Inbox('two') ];
  const consumers = [];
  for (const inbox of inboxes) {
    const c = await m.consumer({ consumerGroup: group, isBroadcast: true });
    c.subscribe(topic, '*', inbox.handler);
    consumers.push(c);
  }
  await Promise.all(consumers.map(c => c.ready()));
  const diag = () => inboxes.map(i => i.summary()).join('\n') + '\n' + m.diag();
  await h.waitFor(() => consumers.every(c => h.ownedQueues(c, topic) === 4), {
    timeout: 30_000, what: 'each broadcast consumer to pull all 4 queues', diag,
  });

  const producer = await m.producer();
  const bodies = [];
  for (let i = 0; i < 12; i++) {
    const body = `b-${i}`;
    bodies.push(body);
    const msg = new Message(topic, 'TagB', body);
    msg.keys = [ `bk-${i}` ];
    await producer.send(msg);
  }

  await h.waitFor(() => inboxes.every(i => i.hasAllBodies(bodies)), {
    timeout: 30_000, what: 'all messages at both instances', diag,
  });
  await h.sleep(1000);
  for (const inbox of inboxes) {
    const counts = inbox.countByBody();
    for (const body of bodies) assert.equal(counts.get(body), 1, `${inbox.name} got ${body} exactly once`);
    assert.equal(inbox.size, bodies.length, `${inbox.name} got nothing else`);
  }
});
