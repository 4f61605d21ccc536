'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');

const { Message } = h;

// Short retry delays keep the test quick; the retry levels used for
// reconsumeTimes 0 and 1 are 3 and 4 (10 s and 30 s by default), so the
// deadlines below also hold with the default levels.
const m = h.useMeridian({
  brokerConf: { messageDelayLevel: Array(18).fill('1s').join(' ') },
});

test('a message whose handler throws comes back with reconsumeTimes incremented, then lands in %DLQ%<group>', { timeout: 150_000 }, async () => {
  const topic = await m.createTopic(h.uniq('T_retry'));
  const group = h.uniq('G_retry');
  const maxReconsumeTimes = 2;
  const poisonKey = h.uniq('poison');
  const goodKey = h.uniq('good');

  const attempts = new h.Inbox('attempts');
  const consumer = await m.consumer({ consumerGroup: group, maxReconsumeTimes });
  consumer.subscribe(topic, '*', async msg => {
    await attempts.handler(msg);
    if ((msg.keys || '').split(' ').includes(poisonKey)) {
      throw new Error('handler failure for the poison message');
    }
  });
  await consumer.ready();
  const producer = await m.producer();

  const poison = new Message(topic, 'TagP', 'poison body');
  poison.keys = [ poisonKey ];
  poison.properties.origin = 'retry-test';
  await producer.send(poison);
  const good = new Message(topic, 'TagG', 'good body');
  good.keys = [ goodKey ];
  await producer.send(good);

  const diag = () => attempts.summary() + '\n' + m.diag();
  await h.waitFor(() => attempts.withKey(poisonKey).length >= maxReconsumeTimes + 1, {
    timeout: 90_000, interval: 100, what: `${maxReconsumeTimes + 1} deliveries of the failing message`, diag,
  });

  const tries = attempts.withKey(poisonKey);
  assert.deepEqual(tries.map(t => t.reconsumeTimes), [ 0, 1, 2 ], 'reconsumeTimes counts the redeliveries');
  for (const t of tries) {
    assert.equal(t.topic, topic, 'redelivery is presented under the original topic');
    assert.equal(t.body.toString(), 'poison body');
    assert.equal(t.tags, 'TagP');
    assert.equal(t.properties.origin, 'retry-test');
  }
  for (let i = 1; i < tries.length; i++) {
    assert.ok(tries[i].receivedAt >= tries[i - 1].receivedAt);
  }
  assert.equal(attempts.withKey(goodKey).length, 1, 'the good message is delivered once');

  const dlq = `%DLQ%${group}`;
  let out;
  await h.waitFor(async () => {
    out = await m.admin('queryMsgByKey', '-t', dlq, '-k', poisonKey);
    return out.code === 0 && h.adminShowsMessage(out.stdout, { key: poisonKey });
  }, {
    timeout: 30_000, interval: 500, what: `the failing message in ${dlq}`,
    diag: () => `last admin run: exit ${out && out.code}\nstdout: ${out && out.stdout}\nstderr: ${out && out.stderr}\n${diag()}`,
  });

  await h.sleep(1500);
  assert.equal(attempts.withKey(poisonKey).length, maxReconsumeTimes + 1, 'no delivery after the message went to the DLQ');
  assert.equal(attempts.withKey(goodKey).length, 1);
});
