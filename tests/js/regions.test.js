'use strict';

// Region failover with the stock ali-ons client: three regions (east,
// north, west), each a name server and a broker, relays between every
// ordered pair, name servers watching each other (regionPeers) in
// automatic failover mode with west as east's standby. An ali-ons
// producer and consumer list east's name server and west's. East is
// SIGKILLed under load: west and north fail it over to west, the
// producer's sends succeed again in broker-west and the consumer receives
// there every message sent after the loss, none twice.
//
// ali-ons has no preferred name server: it sends each name-server request
// to the next address of its list in turn, and moves on to the next one
// only when a request fails (docs/compat/ali-ons.md, "Several name
// servers"). So west's name server is reached through a gate that resets
// every connection until the clients have started and east has delivered
// messages: they start on east's. Once the gate opens, which name server
// a topic's route comes from depends on how many look-ups the client
// makes per route poll; the producer and consumer share one client, as
// ali-ons clients of one process do by default, and its route of the
// topic stays with the name server it had. The test kills east right
// after a send east stored and reports where the consumer was.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');
const { Region, Gate } = require('./regions_harness');

const { Message, Producer, Consumer } = h;

const NAMES = [ 'east', 'north', 'west' ];
const SEND_EVERY_MS = 20;
/** Messages the consumer must receive in east before the gate opens. */
const WARM_UP_MESSAGES = 50;
/** After the gate opens: client commits (1 s) and relay offset sync (0.3 s). */
const SETTLE_BEFORE_KILL_MS = 2500;
/** Wait at most this for a send stored in east just before the kill. */
const PRODUCER_ON_EAST_TIMEOUT_MS = 3000;
/**
 * A consumer that pulled from east can take one rebalance round per queue
 * of east's to let go of them (an ali-ons bug, docs/compat/ali-ons.md):
 * 12 read queues, 1 s rounds.
 */
const CONSUMER_MOVE_TIMEOUT_MS = 40_000;
/** A message east acknowledged this long before the loss has been relayed to west. */
const RPO_BOUND_MS = 2000;
/** Messages sent after the loss the test waits to see acknowledged. */
const SENT_AFTER_KILL = 50;

const regions = [];
const relays = [];
const clients = [];
let gate = null;
let load = null;

after(async () => {
  // The load and every client first (their sockets and timers), then
  // every process.
  if (load) await load.stop();
  for (const c of clients.reverse()) {
    await h.closeAliOns(c, 'closing an ali-ons client').catch(() => {});
  }
  const inner = Producer.defaultProducer;
  if (inner) {
    Producer.defaultProducer = null;
    await h.closeAliOns(inner, 'closing the ali-ons inner producer').catch(() => {});
  }
  for (const r of relays) {
    r.kill();
    h.removeTempDir(r.dir);
  }
  await Promise.all(regions.map(r => r.shutdown()));
  if (gate) await gate.close();
});

/** Three regions whose name servers know each other (ports chosen first). */
async function startRegions() {
  const ports = [];
  while (ports.length < NAMES.length) {
    const p = await h.randomPort();
    if (!ports.includes(p)) ports.push(p);
  }
  for (const [ i, name ] of NAMES.entries()) {
    const peers = NAMES.map((other, j) => [ other, j ])
      .filter(([ other ]) => other !== name)
      .map(([ other, j ]) => `${other}=127.0.0.1:${ports[j]}`);
    regions.push(new Region(name, {
      nsPort: ports[i],
      namesrvConf: {
        regionPeers: peers.join(','),
        regionStatePath: '@DIR@/regionState.json',
        regionProbeIntervalMs: 300,
        regionFailureTimeoutMs: 3000,
        regionCanaryIntervalMs: 300,
        failoverMode: 'auto',
        regionStandby: 'east:west',
      },
    }));
  }
  await Promise.all(regions.map(r => r.start()));
  return Object.fromEntries(regions.map(r => [ r.name, r ]));
}

/** ali-ons options with name servers `nameSrv` (an array: ali-ons takes no `a;b` string). */
function clientOptions(nameSrv, extra = {}) {
  return {
    nameSrv,
    httpclient: h.httpclientStub,
    logger: h.clientLogger,
    instanceName: h.uniq('inst'),
    pollNameServerInteval: h.CLIENT_INTERVAL_MS,
    heartbeatBrokerInterval: h.CLIENT_INTERVAL_MS,
    rebalanceInterval: h.CLIENT_INTERVAL_MS,
    persistConsumerOffsetInterval: h.CLIENT_INTERVAL_MS,
    ...extra,
  };
}

function track(client, kind) {
  client.on('error', err => h.clientLogger.error('[%s error] %s', kind, err && (err.stack || err.message || err)));
  clients.push(client);
  return client;
}

/**
 * Sends one message every SEND_EVERY_MS until stopped; records each
 * acknowledged send (body, when the send began, when it was
 * acknowledged, the broker group that stored it) and the failures.
 */
class Load {
  constructor(producer, topic) {
    this.acked = [];
    this.failures = 0;
    this.lastError = null;
    this.stopped = false;
    this.done = this._run(producer, topic);
  }

  async _run(producer, topic) {
    for (let i = 0; !this.stopped; i++) {
      const body = `m-${i}`;
      const startedAt = Date.now();
      try {
        const r = await producer.send(new Message(topic, 'T', body));
        if (r.sendStatus === 'SEND_OK') {
          this.acked.push({ body, startedAt, at: Date.now(), broker: r.messageQueue.brokerName });
        } else {
          this.failures += 1;
        }
      } catch (err) {
        this.failures += 1;
        this.lastError = err;
      }
      await h.sleep(SEND_EVERY_MS);
    }
  }

  async stop() {
    this.stopped = true;
    await this.done;
  }

  byBroker(list = this.acked) {
    const counts = {};
    for (const a of list) counts[a.broker] = (counts[a.broker] || 0) + 1;
    return counts;
  }
}

/** The broker groups whose queues of `topic` the consumer pulls. */
function heldBrokers(consumer, topic) {
  const brokers = new Set();
  for (const mq of consumer.processQueueTable.keys()) {
    const m = mq.match(/^\[topic="([^"]*)", brokerName="([^"]*)"/);
    if (m && m[1] === topic) brokers.add(m[2]);
  }
  return [ ...brokers ].sort();
}

function canariesSeen(status, from) {
  return !!status && from.every(r => status.report.views[r] && status.report.views[r].canarySeenMs > 0);
}

test('a region SIGKILLed under load fails over to its standby: ali-ons sends and receives there, nothing lost or repeated', { timeout: 90_000 }, async t => {
  const began = Date.now();
  const { east, north, west } = await startRegions();
  const topic = h.uniq('T_failover');
  await Promise.all(regions.map(r => r.createTopic(topic)));
  for (const a of regions) {
    for (const b of regions) {
      if (a === b) continue;
      relays.push(new h.Relay(a, b, topic, {
        replicationGroup: `relay-${a.name}-${b.name}`,
        routeRefreshIntervalMs: 500,
        offsetSyncIntervalMs: 300,
      }));
    }
  }
  await Promise.all(relays.map(r => r.start()));
  // Canaries travel every link into east and west, end to end.
  await h.waitFor(async () => canariesSeen(await east.regionStatus(), [ 'north', 'west' ]) &&
      canariesSeen(await west.regionStatus(), [ 'east', 'north' ]), {
    timeout: 20_000, interval: 300, what: 'canaries on every link', diag: () => regions.map(r => r.diag(10)).join('\n'),
  });
  const setupMs = Date.now() - began;

  // East's applications list east's name server, then west's, which they
  // cannot reach while they start.
  gate = await new Gate(west.namesrvAddr).start();
  const nameSrv = [ east.namesrvAddr, gate.addr ];
  if (!Producer.defaultProducer) {
    await Producer.getDefaultProducer(clientOptions(nameSrv, { instanceName: h.uniq('inner') }));
  }
  // One application: its producer and consumer share an ali-ons client
  // (the same instanceName, as every client of a process by default) and
  // with it the name-server list, the route table and the broker table.
  const app = h.uniq('app');
  const inbox = new h.Inbox('consumer');
  const consumer = track(new Consumer(clientOptions(nameSrv, {
    instanceName: app,
    consumerGroup: h.uniq('G_failover'),
    consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET',
  })), 'consumer');
  consumer.subscribe(topic, '*', inbox.handler);
  await consumer.ready();
  const producer = track(new Producer(clientOptions(nameSrv, { instanceName: app, producerGroup: h.uniq('PG') })), 'producer');
  await producer.ready();
  load = new Load(producer, topic);

  await h.waitFor(() => inbox.size >= WARM_UP_MESSAGES, {
    timeout: 20_000, what: `${WARM_UP_MESSAGES} messages at the consumer`,
    diag: () => `${load.acked.length} acked, ${load.failures} failed (${load.lastError})\n${inbox.summary()}\n${east.diag()}\n${h.clientLogger.problems()}`,
  });
  assert.deepEqual(Object.keys(load.byBroker()), [ east.brokerName ], 'the producer starts on east');
  assert.deepEqual(heldBrokers(consumer, topic), [ east.brokerName ], 'the consumer starts on east');
  gate.open = true;
  await h.sleep(SETTLE_BEFORE_KILL_MS);
  // Kill right after a send east stored, while the producer writes there
  // (if its route has gone to west's name server, it never does again:
  // the report says so).
  const ackCount = load.acked.length;
  await h.waitFor(() => load.acked.length > ackCount && load.acked[load.acked.length - 1].broker === east.brokerName, {
    timeout: PRODUCER_ON_EAST_TIMEOUT_MS, interval: 5, what: 'a send stored in east',
  }).catch(() => {});

  // East is lost: every process, SIGKILL, under load.
  const receivedBeforeKill = new Set(inbox.bodies());
  const sentBeforeKill = load.acked.slice();
  const consumerAtKill = heldBrokers(consumer, topic);
  const producerAtKill = sentBeforeKill[sentBeforeKill.length - 1].broker;
  const killedAt = Date.now();
  await east.kill9();

  // West and north agree east failed; automatic mode moves east's clients
  // to west.
  const status = await h.waitFor(async () => {
    const s = await west.regionStatus();
    const v = s && s.verdicts && s.verdicts.east;
    return v && v.failed && v.movedTo === 'west' ? s : null;
  }, { timeout: 20_000, interval: 200, what: "west's verdict: east failed, moved to west", diag: () => west.diag() + '\n' + north.diag() });
  const failedOverMs = Date.now() - killedAt;
  assert.deepEqual([ ...status.verdicts.east.agreeing ].sort(), [ 'north', 'west' ], 'north and west agree');

  // The producer's sends succeed again, in west.
  const afterKill = () => load.acked.filter(a => a.startedAt > killedAt);
  await h.waitFor(() => afterKill().length >= SENT_AFTER_KILL, {
    timeout: 20_000, what: `${SENT_AFTER_KILL} sends acknowledged after the loss`,
    diag: () => `${load.failures} failed (${load.lastError})\n${h.clientLogger.problems()}`,
  });
  await load.stop();
  const sentAfterKill = afterKill();
  assert.deepEqual(Object.keys(load.byBroker(sentAfterKill)), [ west.brokerName ], 'every send after the loss is stored in west');

  // The consumer receives every one of them there.
  const wanted = sentAfterKill.map(a => a.body);
  await h.waitFor(() => inbox.hasAllBodies(wanted), {
    timeout: CONSUMER_MOVE_TIMEOUT_MS, what: 'every message sent after the loss at the consumer',
    diag: () => {
      const got = new Set(inbox.bodies());
      return `missing: ${wanted.filter(b => !got.has(b)).slice(0, 20)}\n${h.clientLogger.problems()}`;
    },
  });
  // Time for a late second delivery to show.
  await h.sleep(1500);

  const counts = inbox.countByBody();
  const twice = [ ...counts ].filter(([ , n ]) => n > 1).map(([ b ]) => b);
  const repeatedAfterKill = twice.filter(b => !receivedBeforeKill.has(b));
  assert.deepEqual(repeatedAfterKill, [], 'only messages consumed before the loss are received again');
  for (const b of wanted) assert.equal(counts.get(b), 1, `${b} received once`);

  // RPO: what east acknowledged and no consumer can ever see until east
  // returns is only what the relays had not yet copied, the last moments
  // before the loss.
  const received = new Set(inbox.bodies());
  const lost = sentBeforeKill.filter(a => !received.has(a.body));
  for (const a of lost) {
    assert.equal(a.broker, east.brokerName, `${a.body}, stored in west before the loss, is received`);
    assert.ok(killedAt - a.at < RPO_BOUND_MS, `${a.body}, acknowledged ${killedAt - a.at} ms before the loss, is received`);
  }

  const producerRto = sentAfterKill[0].at - killedAt;
  const wantedSet = new Set(wanted);
  const consumerRto = Math.min(...inbox.msgs.filter(m => wantedSet.has(m.body.toString('utf8'))).map(m => m.receivedAt)) - killedAt;
  const line = `east SIGKILLed: failed over (west's verdict) after ${failedOverMs} ms; ` +
    `producer RTO ${producerRto} ms (it last wrote to ${producerAtKill}), ` +
    `consumer RTO ${consumerRto} ms (it pulled from ${consumerAtKill.join('+')}); ` +
    `before the loss ${sentBeforeKill.length} sends acknowledged ${JSON.stringify(load.byBroker(sentBeforeKill))}, ` +
    `${receivedBeforeKill.size} received; after it ${sentAfterKill.length} sent and received; ` +
    `${lost.length} acknowledged by east before the loss not received (RPO, up to ${lost.length ? killedAt - lost[0].at : 0} ms); ` +
    `${twice.length} received twice (all consumed before the loss); ${load.failures} sends failed; ` +
    `setup ${setupMs} ms`;
  t.diagnostic(line);
  console.log(line);
});
