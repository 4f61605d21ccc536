'use strict';

// mqadmin commands about running clients, with ali-ons clients:
// consumerConnection, producerConnection, consumerStatus (ali-ons does not
// answer a broker's GET_CONSUMER_RUNNING_INFO: the command must say so,
// not hang), and clusterList's rates.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');

const { Message } = h;
const m = h.useMeridian();

test('admin: connections of running ali-ons clients', { timeout: 90_000 }, async () => {
  const topic = await m.createTopic(h.uniq('T_admin'));
  const group = h.uniq('G_admin');
  const producerGroup = h.uniq('PG_admin');
  const inbox = new h.Inbox('admin');
  const consumer = await m.consumer({ consumerGroup: group });
  consumer.subscribe(topic, 'TagA', inbox.handler);
  await consumer.ready();
  const producer = await m.producer({ producerGroup });
  const bodies = [];
  for (let i = 0; i < 5; i++) {
    const body = `a-${i}`;
    bodies.push(body);
    await producer.send(new Message(topic, 'TagA', body));
  }
  await h.waitFor(() => inbox.hasAllBodies(bodies), {
    timeout: 30_000, what: 'the messages at the consumer', diag: () => inbox.summary() + '\n' + m.diag(),
  });

  let cc;
  await h.waitFor(async () => {
    cc = await m.admin('--json', 'consumerConnection', '-g', group);
    return cc.code === 0;
  }, { timeout: 15_000, interval: 300, what: 'consumerConnection', diag: () => `${cc && cc.stdout}${cc && cc.stderr}` });
  const conn = JSON.parse(cc.stdout);
  assert.equal(conn.connectionSet.length, 1, cc.stdout);
  assert.ok(conn.connectionSet[0].clientAddr.startsWith('127.0.0.1'), cc.stdout);
  assert.equal(conn.subscriptionTable[topic].subString, 'TagA', cc.stdout);

  let pc;
  await h.waitFor(async () => {
    pc = await m.admin('--json', 'producerConnection', '-g', producerGroup, '-t', topic);
    return pc.code === 0;
  }, { timeout: 15_000, interval: 300, what: 'producerConnection', diag: () => `${pc && pc.stdout}${pc && pc.stderr}` });
  const prod = JSON.parse(pc.stdout);
  assert.equal(prod.connectionSet.length, 1, pc.stdout);

  // ali-ons has no handler for the broker's GET_CONSUMER_RUNNING_INFO:
  // the answer is an error naming the client, within the broker's wait.
  const started = Date.now();
  const status = await m.admin('consumerStatus', '-g', group, '-i', conn.connectionSet[0].clientId);
  assert.notEqual(status.code, 0, status.stdout);
  assert.ok(`${status.stdout}${status.stderr}`.includes('did not answer'), `${status.stdout}${status.stderr}`);
  assert.ok(Date.now() - started < 20_000, 'consumerStatus waited too long');

  const list = await m.admin('--json', 'clusterList');
  assert.equal(list.code, 0, list.stderr);
  const rt = JSON.parse(list.stdout).brokers[0].runtime;
  assert.ok(Number(rt.putTps.split(' ')[2]) > 0, `putTps ${rt.putTps}`);
});
