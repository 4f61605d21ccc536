'use strict';

// Two regions (two `meridian dev` processes with their own regionId), a
// `meridian relay` each way between them, ali-ons producers and consumers
// in both: every consumer receives every region's messages once, with
// their tags, keys and region intact, also after a relay is SIGKILLed
// and restarted.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');

const { Message } = h;
const east = new h.Meridian({ brokerConf: { regionId: 'east', brokerName: 'broker-east' } });
const west = new h.Meridian({ brokerConf: { regionId: 'west', brokerName: 'broker-west' } });
const relays = [];

before(async () => {
  await east.start();
  await west.start();
});

after(async () => {
  for (const r of relays) r.kill();
  await east.shutdown();
  await west.shutdown();
});

async function send(producer, topic, region, from, n) {
  const bodies = [];
  for (let i = from; i < from + n; i++) {
    const body = `${region}-${i}`;
    const msg = new Message(topic, `Tag${i % 3}`, body);
    msg.keys = [ `key-${body}` ];
    const r = await producer.send(msg);
    assert.equal(r.sendStatus, 'SEND_OK', `send ${body}`);
    bodies.push(body);
  }
  return bodies;
}

test('two regions relaying both ways: ali-ons consumers in each receive every message of both once', { timeout: 120_000 }, async () => {
  const topic = h.uniq('T_relay');
  await east.createTopic(topic);
  await west.createTopic(topic);
  relays.push(new h.Relay(east, west, topic), new h.Relay(west, east, topic));
  for (const r of relays) await r.start();

  const pe = await east.producer();
  const pw = await west.producer();
  const expected = [
    ...await send(pe, topic, 'east', 0, 20),
    ...await send(pw, topic, 'west', 0, 20),
  ];
  // The east → west relay dies mid-stream and comes back: it resumes
  // where west's copy ends.
  relays[0].kill();
  expected.push(...await send(pe, topic, 'east', 20, 10));
  await h.sleep(500);
  await relays[0].start();
  expected.push(...await send(pe, topic, 'east', 30, 10));

  for (const region of [ east, west ]) {
    const inbox = new h.Inbox();
    const consumer = await region.consumer({ consumerGroup: h.uniq('G_relay') });
    consumer.subscribe(topic, '*', inbox.handler);
    await consumer.ready();
    await h.waitFor(() => inbox.hasAllBodies(expected), {
      timeout: 60_000,
      what: `every message in ${region === east ? 'east' : 'west'}`,
      diag: () => inbox.summary() + '\n' + relays.map(r => r.diag()).join('\n') + '\n' + region.diag(),
    });
    await h.sleep(1000);
    const counts = inbox.countByBody();
    for (const body of expected) {
      assert.equal(counts.get(body), 1, `${body} delivered exactly once`);
    }
    assert.equal(inbox.size, expected.length, 'nothing else delivered');
    for (const msg of inbox.msgs) {
      const body = msg.body.toString('utf8');
      const [ born, i ] = body.split('-');
      assert.equal(msg.tags, `Tag${Number(i) % 3}`, `tag of ${body}`);
      assert.equal(msg.keys, `key-${body}`, `key of ${body}`);
      assert.equal(msg.properties.MSG_REGION, born, `region of ${body}`);
    }
    await region.closeClient(consumer);
  }
});
