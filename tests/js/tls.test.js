'use strict';

// TLS in permissive mode: Node's TLS client speaks remoting to the name
// server and the broker over TLS, while ali-ons (which has no TLS) keeps
// working in plaintext on the same ports.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');

const { Message } = h;
const m = h.useMeridian({ brokerConf: { 'tls.server.mode': 'permissive', 'tls.test.mode.enable': 'true' } });

test('a TLS client and a plaintext ali-ons client share the ports of a permissive server', { timeout: 60_000 }, async () => {
  const topic = await m.createTopic(h.uniq('T_tls'));

  // GET_ROUTEINFO_BY_TOPIC over TLS to the name server.
  const route = await h.remotingRequest(m.namesrvAddr, 105, { topic }, { tls: true });
  assert.equal(route.code, 0, `route over TLS: ${route.remark}`);
  assert.ok(route.body.toString('utf8').includes('brokerDatas'));
  // GET_BROKER_RUNTIME_INFO over TLS to the broker.
  const status = await h.remotingRequest(m.brokerAddr, 28, {}, { tls: true });
  assert.equal(status.code, 0, `broker status over TLS: ${status.remark}`);

  // ali-ons, plaintext, on the same ports.
  const producer = await m.producer();
  const inbox = new h.Inbox();
  const consumer = await m.consumer({ consumerGroup: h.uniq('G_tls') });
  consumer.subscribe(topic, '*', inbox.handler);
  await consumer.ready();
  const sent = [];
  for (let i = 0; i < 4; i++) {
    const body = `plain-${i}`;
    const r = await producer.send(new Message(topic, 'TagA', body));
    assert.equal(r.sendStatus, 'SEND_OK');
    sent.push(body);
  }
  await h.waitFor(() => inbox.hasAllBodies(sent), {
    timeout: 30_000, what: 'the plaintext consumer receives', diag: () => inbox.summary() + '\n' + m.diag(),
  });
});
