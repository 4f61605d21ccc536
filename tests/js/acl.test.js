'use strict';

// Access control with ali-ons: it signs every request (AccessKey,
// OnsChannel, Signature: HMAC-SHA1 over the sorted header values and the
// body) when given accessKeyId / accessKeySecret.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./harness');

const { Message } = h;

const ADMIN = [ 'jsAdminKey', 'js-admin-secret' ];
const USER = [ 'jsUserKey', 'js-user-secret' ];
const TOPIC = h.uniq('T_acl');
const DENIED_TOPIC = h.uniq('T_acl_denied');

const aclDir = fs.mkdtempSync(path.join(os.tmpdir(), 'meridian-js-acl-'));
const aclFile = path.join(aclDir, 'plain_acl.yml');
fs.writeFileSync(aclFile, `accounts:
  - accessKey: ${ADMIN[0]}
    secretKey: ${ADMIN[1]}
    admin: true
  - accessKey: ${USER[0]}
    secretKey: ${USER[1]}
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - ${TOPIC}=PUB|SUB
`);

const m = h.useMeridian({ brokerConf: { aclEnable: 'true', aclFile } });

async function createTopic(topic) {
  const r = await m.admin('updateTopic', '-t', topic, '-c', 'DefaultCluster', '-r', '2', '-w', '2',
    '--accessKey', ADMIN[0], '--secretKey', ADMIN[1]);
  assert.equal(r.code, 0, `updateTopic: ${r.stdout}${r.stderr}`);
  await m.waitForRoute(topic, { queues: 2 });
}

// ali-ons reports a refused send only as "still failed"; the broker's log
// says why.
// The log line may reach us a moment after the answer.
const refusedBecause = why => h.waitFor(
  () => [ ...m.stdout, ...m.stderr ].some(l => l.includes('refused by ACL') && l.includes(why)),
  { timeout: 5000, what: `a refusal: ${why}`, diag: () => m.diag() });

const keys = ([ accessKeyId, accessKeySecret ]) => ({ accessKeyId, accessKeySecret });

test('a signed ali-ons producer and consumer work where the account allows, and nowhere else', { timeout: 90_000 }, async () => {
  await createTopic(TOPIC);
  await createTopic(DENIED_TOPIC);

  const producer = await m.producer(keys(USER));
  const sent = [];
  for (let i = 0; i < 6; i++) {
    const body = `acl-${i}`;
    const r = await producer.send(new Message(TOPIC, 'TagA', body));
    assert.equal(r.sendStatus, 'SEND_OK');
    sent.push(body);
  }
  await assert.rejects(producer.send(new Message(DENIED_TOPIC, 'TagA', 'denied')), 'no PUB on the other topic');
  await refusedBecause(`has no PUB permission on topic ${DENIED_TOPIC}`);

  const inbox = new h.Inbox();
  const consumer = await m.consumer({ consumerGroup: h.uniq('G_acl'), ...keys(USER) });
  consumer.subscribe(TOPIC, '*', inbox.handler);
  await consumer.ready();
  await h.waitFor(() => inbox.hasAllBodies(sent), {
    timeout: 30_000, what: 'the signed consumer receives every message', diag: () => inbox.summary() + '\n' + m.diag(),
  });
  await h.sleep(1000);
  for (const body of sent) assert.equal(inbox.countByBody().get(body), 1, `${body} once`);
});

test('a wrong secret and an unsigned client are refused', { timeout: 60_000 }, async () => {
  const wrong = await m.producer(keys([ USER[0], 'not-the-secret' ]));
  await assert.rejects(wrong.send(new Message(TOPIC, 'TagA', 'wrong-secret')));
  await refusedBecause(`signature check failed for accessKey=${USER[0]}`);
  const unsigned = await m.producer();
  await assert.rejects(unsigned.send(new Message(TOPIC, 'TagA', 'unsigned')));
  await refusedBecause('no AccessKey in the request');
});

test.after(() => fs.rmSync(aclDir, { recursive: true, force: true }));
