'use strict';

// Test harness: runs a real `meridian dev` process (nameserver + broker),
// talks to it with ali-ons, and cleans up every process it started.

const { spawn, execFile } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const util = require('node:util');
const { before, after } = require('node:test');

const { Producer, Consumer, Message } = require('ali-ons');

const MERIDIAN_BIN = process.env.MERIDIAN_BIN
  ? path.resolve(process.env.MERIDIAN_BIN)
  : path.resolve(__dirname, '../../target/debug/meridian');

const READY_LINE = 'meridian dev ready';
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const ADMIN_TIMEOUT_MS = 20_000;
const CLUSTER = 'DefaultCluster';
const VERBOSE = !!process.env.MERIDIAN_TEST_VERBOSE;

// Fast client timers so rebalancing, heartbeats and offset commits happen
// within about a second, and closed clients release their timers quickly.
const CLIENT_INTERVAL_MS = 1000;

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// Process bookkeeping: every child is killed on `after`, on exit and on signals.

const children = new Set();
const dataDirs = new Set();

function killGroup(child, signal) {
  if (!child || !child.pid) return;
  try {
    process.kill(-child.pid, signal);
  } catch (_) {
    try {
      child.kill(signal);
    } catch (_) { /* already gone */ }
  }
}

function hasExited(child) {
  return child.exitCode !== null || child.signalCode !== null;
}

/**
 * Count `child` among the processes killed on `after`, on exit and on
 * signals (for helpers that spawn Meridian processes of their own).
 */
function trackChild(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

/** A new temporary directory, removed on exit (unless MERIDIAN_TEST_KEEP_DATA). */
function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  dataDirs.add(dir);
  return dir;
}

/** Remove a directory made by `tempDir` now (unless MERIDIAN_TEST_KEEP_DATA). */
function removeTempDir(dir) {
  if (process.env.MERIDIAN_TEST_KEEP_DATA) return;
  fs.rmSync(dir, { recursive: true, force: true });
  dataDirs.delete(dir);
}

function killAllSync() {
  for (const child of children) {
    killGroup(child, 'SIGKILL');
  }
  children.clear();
  if (!process.env.MERIDIAN_TEST_KEEP_DATA) {
    for (const dir of dataDirs) {
      try {
        fs.rmSync(dir, { recursive: true, force: true });
      } catch (_) { /* best effort */ }
    }
  }
  dataDirs.clear();
}

process.on('exit', killAllSync);
for (const sig of [ 'SIGINT', 'SIGTERM', 'SIGHUP' ]) {
  process.once(sig, () => {
    killAllSync();
    process.exit(128 + (os.constants.signals[sig] || 1));
  });
}

// ---------------------------------------------------------------------------
// Small utilities

let uniqCounter = 0;

/** A name unique to this run, usable as a RocketMQ topic or group name. */
function uniq(prefix) {
  uniqCounter += 1;
  const rand = crypto.randomBytes(3).toString('hex');
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${uniqCounter}_${rand}`;
}

function tail(lines, n) {
  return lines.slice(-n).join('\n');
}

function canListen(port) {
  return new Promise(resolve => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

async function randomPort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen({ port: 0, exclusive: true }, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Free ports for the nameserver and the broker. RocketMQ brokers may also use
 * listenPort-2 (VIP channel) and listenPort+1 (HA), so those are kept free too.
 */
async function freePorts() {
  for (let attempt = 0; attempt < 50; attempt++) {
    const ns = await randomPort();
    const broker = await randomPort();
    if (ns === broker || broker < 1026 || Math.abs(ns - broker) <= 2) continue;
    const around = [ broker - 2, broker - 1, broker + 1, broker + 2 ];
    const ok = await Promise.all(around.map(canListen));
    if (ok.every(Boolean)) return { ns, broker };
  }
  throw new Error('could not find free ports');
}

/**
 * Poll `predicate` (sync or async) until it returns a truthy value or the
 * deadline passes. Returns the truthy value.
 */
async function waitFor(predicate, { timeout = 20_000, interval = 50, what = 'condition', diag } = {}) {
  const deadline = Date.now() + timeout;
  let lastErr;
  for (;;) {
    try {
      const v = await predicate();
      if (v) return v;
      lastErr = undefined;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      let msg = `timed out after ${timeout} ms waiting for ${what}`;
      if (lastErr) msg += `\nlast error: ${lastErr.stack || lastErr}`;
      if (diag) {
        try {
          msg += '\n' + diag();
        } catch (_) { /* diagnostics are best effort */ }
      }
      throw new Error(msg);
    }
    await sleep(interval);
  }
}

// ---------------------------------------------------------------------------
// Minimal remoting client (JSON headers) used to check routes independently
// of ali-ons.

function remotingRequest(addr, code, extFields, { timeout = 3000, body, tls = false } = {}) {
  const [ host, portStr ] = addr.split(':');
  const header = Buffer.from(JSON.stringify({
    code, language: 'JAVA', opaque: 1, flag: 0, version: 121, extFields,
  }));
  const bodyBuf = body ? Buffer.from(body) : Buffer.alloc(0);
  const frame = Buffer.alloc(8 + header.length + bodyBuf.length);
  frame.writeInt32BE(4 + header.length + bodyBuf.length, 0);
  frame.writeInt32BE(header.length, 4);
  header.copy(frame, 8);
  bodyBuf.copy(frame, 8 + header.length);

  return new Promise((resolve, reject) => {
    // `tls`: Node's own TLS client (the server's certificate is not
    // verified: a test-mode server's is self-signed).
    const sock = tls
      ? require('node:tls').connect({ host, port: Number(portStr), rejectUnauthorized: false })
      : net.connect({ host, port: Number(portStr) });
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => finish(new Error(`no response from ${addr} in ${timeout} ms`)), timeout);
    sock.on(tls ? 'secureConnect' : 'connect', () => sock.write(frame));
    sock.on('error', err => finish(err));
    sock.on('close', () => finish(new Error(`connection to ${addr} closed before a response`)));
    sock.on('data', chunk => {
      buf = Buffer.concat([ buf, chunk ]);
      if (buf.length < 4) return;
      const total = buf.readInt32BE(0);
      if (buf.length < 4 + total) return;
      const serializeType = buf.readUInt8(4);
      const headerLen = buf.readUInt32BE(4) & 0xffffff;
      if (serializeType !== 0) {
        finish(new Error(`response to a JSON request used serialize type ${serializeType}`));
        return;
      }
      try {
        const h = JSON.parse(buf.slice(8, 8 + headerLen).toString('utf8'));
        const respBody = buf.slice(8 + headerLen, 4 + total);
        finish(null, { ...h, body: respBody.length ? respBody : null });
      } catch (err) {
        finish(err);
      }
    });
  });
}

/** Parse JSON that may use fastjson-style unquoted integer keys. */
function parseLooseJson(text) {
  try {
    return JSON.parse(text);
  } catch (_) {
    return JSON.parse(text.replace(/([{,]\s*)(-?\d+)\s*:/g, '$1"$2":'));
  }
}

// ---------------------------------------------------------------------------
// ali-ons client plumbing

const httpclientStub = {
  async request(url) {
    throw new Error(`unexpected HTTP name server lookup (${url}); nameSrv should be used`);
  },
};

class CapturingLogger {
  constructor() {
    this.lines = [];
  }
  _log(level, args) {
    const line = `${new Date().toISOString()} ${level} ${util.format(...args)}`;
    this.lines.push(line);
    if (this.lines.length > 500) this.lines.splice(0, this.lines.length - 500);
    if (VERBOSE) process.stderr.write(line + '\n');
  }
  info(...args) { this._log('INFO', args); }
  warn(...args) { this._log('WARN', args); }
  error(...args) { this._log('ERROR', args); }
  debug() {}
  problems(n = 30) {
    return tail(this.lines.filter(l => !l.includes(' INFO ')), n);
  }
}

const clientLogger = new CapturingLogger();

/** Records every delivered message; `handler` is what ali-ons calls. */
class Inbox {
  constructor(name = 'inbox') {
    this.name = name;
    this.msgs = [];
    this.handler = async msg => {
      this.msgs.push(Inbox.snapshot(msg));
    };
  }

  static snapshot(msg) {
    return {
      msgId: msg.msgId,
      topic: msg.topic,
      tags: msg.tags,
      keys: msg.keys,
      body: msg.body ? Buffer.from(msg.body) : Buffer.alloc(0),
      properties: { ...msg.properties },
      reconsumeTimes: msg.reconsumeTimes,
      queueId: msg.queueId,
      queueOffset: msg.queueOffset,
      storeHost: msg.storeHost,
      bornTimestamp: msg.bornTimestamp,
      storeTimestamp: msg.storeTimestamp,
      receivedAt: Date.now(),
    };
  }

  get size() {
    return this.msgs.length;
  }

  withKey(key) {
    return this.msgs.filter(m => (m.keys || '').split(' ').includes(key));
  }

  withProperty(name, value) {
    return this.msgs.filter(m => m.properties[name] === value);
  }

  bodies() {
    return this.msgs.map(m => m.body.toString('utf8'));
  }

  /** Map body → number of deliveries. */
  countByBody() {
    const counts = new Map();
    for (const m of this.msgs) {
      const b = m.body.toString('utf8');
      counts.set(b, (counts.get(b) || 0) + 1);
    }
    return counts;
  }

  hasAllBodies(bodies) {
    const got = new Set(this.bodies());
    return bodies.every(b => got.has(b));
  }

  summary() {
    return `${this.name}: ${this.msgs.length} deliveries: ` +
      JSON.stringify(this.msgs.slice(0, 50).map(m => ({
        body: m.body.toString('utf8').slice(0, 40),
        tags: m.tags,
        queueId: m.queueId,
        rt: m.reconsumeTimes,
      })));
  }
}

/**
 * Queue id that `msg.shardingKey = key` selects in ali-ons for a topic with
 * `queueCount` writable queues (lib/producer/topic_publish_info.js).
 */
function shardingQueueId(key, queueCount) {
  return crypto.createHash('md5').update(key).digest().readUInt32BE(0) % queueCount;
}

/**
 * A sharding key that ali-ons maps to a non-zero queue (it drops the
 * sharding for queue 0, a client bug). `avoid` lists queue ids not wanted.
 */
function shardingKeyForNonZeroQueue(prefix, queueCount = 4, avoid = []) {
  for (let i = 0; i < 10_000; i++) {
    const key = `${prefix}-${i}`;
    const q = shardingQueueId(key, queueCount);
    if (q !== 0 && !avoid.includes(q)) return { key, queueId: q };
  }
  throw new Error('no sharding key found');
}

/** Count the queues of `topic` a consumer currently pulls. */
function ownedQueues(consumer, topic) {
  let n = 0;
  for (const key of consumer.processQueueTable.keys()) {
    if (key.startsWith(`[topic="${topic}",`)) n++;
  }
  return n;
}

// ---------------------------------------------------------------------------
// Meridian process

class Meridian {
  constructor({ brokerConf } = {}) {
    this.bin = MERIDIAN_BIN;
    this.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'meridian-js-'));
    dataDirs.add(this.dataDir);
    this.confPath = null;
    if (brokerConf) {
      const text = typeof brokerConf === 'string'
        ? brokerConf
        : Object.entries(brokerConf).map(([ k, v ]) => `${k}=${v}`).join('\n') + '\n';
      this.confPath = path.join(this.dataDir, 'extra-broker.conf');
      fs.writeFileSync(this.confPath, text);
    }
    this.child = null;
    this.stdout = [];
    this.stderr = [];
    this.nsPort = null;
    this.brokerPort = null;
    this.clients = [];
    this.starts = 0;
  }

  get namesrvAddr() {
    return `127.0.0.1:${this.nsPort}`;
  }

  get brokerAddr() {
    return `127.0.0.1:${this.brokerPort}`;
  }

  get running() {
    return !!this.child && !hasExited(this.child);
  }

  _pushLines(store, chunk, partialKey) {
    const text = (this[partialKey] || '') + chunk.toString('utf8');
    const parts = text.split('\n');
    this[partialKey] = parts.pop();
    for (const line of parts) {
      store.push(line);
      if (VERBOSE) process.stderr.write(`[meridian] ${line}\n`);
    }
    if (store.length > 2000) store.splice(0, store.length - 2000);
    return parts;
  }

  /** Diagnostics for failure messages. */
  diag(n = 40) {
    const parts = [];
    parts.push(`meridian (${this.running ? 'running' : 'not running'}) stderr tail:\n${tail(this.stderr, n)}`);
    parts.push(`meridian stdout tail:\n${tail(this.stdout, Math.min(n, 15))}`);
    parts.push(`ali-ons warnings/errors:\n${clientLogger.problems(n)}`);
    return parts.join('\n');
  }

  async start() {
    if (this.running) throw new Error('meridian already running');
    if (!fs.existsSync(this.bin)) {
      throw new Error(`meridian binary not found at ${this.bin} (build it with \`cargo build\` or set MERIDIAN_BIN)`);
    }
    if (this.nsPort === null) {
      const ports = await freePorts();
      this.nsPort = ports.ns;
      this.brokerPort = ports.broker;
    }
    const args = [
      'dev',
      '--data-dir', this.dataDir,
      '--namesrv-port', String(this.nsPort),
      '--broker-port', String(this.brokerPort),
    ];
    if (this.confPath) args.push('-c', this.confPath);

    this.starts += 1;
    this.stdout.push(`--- start #${this.starts}: ${this.bin} ${args.join(' ')}`);
    this.stderr.push(`--- start #${this.starts}`);
    const child = spawn(this.bin, args, {
      stdio: [ 'ignore', 'pipe', 'pipe' ],
      detached: true,
      env: { ...process.env, RUST_BACKTRACE: process.env.RUST_BACKTRACE || '1' },
    });
    this.child = child;
    children.add(child);
    child.on('exit', () => children.delete(child));

    let readyResolve;
    let readyReject;
    const ready = new Promise((resolve, reject) => {
      readyResolve = resolve;
      readyReject = reject;
    });
    child.stdout.on('data', chunk => {
      const lines = this._pushLines(this.stdout, chunk, '_outPartial');
      if (lines.some(l => l.includes(READY_LINE))) readyResolve();
    });
    child.stderr.on('data', chunk => this._pushLines(this.stderr, chunk, '_errPartial'));
    child.once('error', err => readyReject(new Error(`failed to spawn ${this.bin}: ${err.message}`)));
    child.once('exit', (code, signal) => {
      readyReject(new Error(`meridian exited before it was ready (code ${code}, signal ${signal})\n${this.diag()}`));
    });

    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(
        `meridian did not print "${READY_LINE}" within ${READY_TIMEOUT_MS} ms\n${this.diag()}`)), READY_TIMEOUT_MS);
    });
    try {
      await Promise.race([ ready, timeout ]);
    } catch (err) {
      await this.stop({ signal: 'SIGKILL' });
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return this;
  }

  /** Stop the process group: `signal` first, SIGKILL after STOP_TIMEOUT_MS. */
  async stop({ signal = 'SIGTERM' } = {}) {
    const child = this.child;
    if (!child) return;
    if (!hasExited(child)) {
      const exited = new Promise(resolve => child.once('exit', resolve));
      killGroup(child, signal);
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    killGroup(child, 'SIGKILL');
    children.delete(child);
    this.child = null;
  }

  /** Stop and start again with the same data directory and ports. */
  async restart({ signal = 'SIGTERM' } = {}) {
    await this.stop({ signal });
    await this.start();
  }

  /** Run `meridian <args>`; resolves to { code, stdout, stderr }. */
  run(args, { timeout = ADMIN_TIMEOUT_MS } = {}) {
    return new Promise(resolve => {
      const child = execFile(this.bin, args, { timeout, maxBuffer: 16 * 1024 * 1024, killSignal: 'SIGKILL' },
        (err, stdout, stderr) => {
          children.delete(child);
          let code = 0;
          if (err) code = typeof err.code === 'number' ? err.code : (err.signal ? -1 : 1);
          resolve({ code, stdout: String(stdout), stderr: String(stderr), args });
        });
      children.add(child);
    });
  }

  /** `meridian admin -n <namesrv> <args...>` */
  admin(...args) {
    return this.run([ 'admin', '-n', this.namesrvAddr, ...args ]);
  }

  /** Route of `topic` from the nameserver, or null when it has none. */
  async route(topic) {
    const resp = await remotingRequest(this.namesrvAddr, 105, { topic });
    if (resp.code !== 0 || !resp.body) return null;
    return parseLooseJson(resp.body.toString('utf8'));
  }

  /** Wait until the nameserver serves a writable, readable route for `topic`. */
  async waitForRoute(topic, { timeout = 15_000, queues } = {}) {
    return waitFor(async () => {
      const r = await this.route(topic);
      if (!r || !Array.isArray(r.queueDatas) || !Array.isArray(r.brokerDatas)) return null;
      const qd = r.queueDatas.find(q => (q.perm & 6) === 6 && q.writeQueueNums > 0 && q.readQueueNums > 0);
      const bd = r.brokerDatas.find(b => b.brokerAddrs && b.brokerAddrs['0']);
      if (!qd || !bd) return null;
      if (queues && (qd.writeQueueNums !== queues || qd.readQueueNums !== queues)) return null;
      return r;
    }, { timeout, what: `a route for topic ${topic}`, diag: () => this.diag() });
  }

  /** Create a topic with `meridian admin updateTopic` and wait for its route. */
  async createTopic(topic, { queues = 4 } = {}) {
    let last;
    await waitFor(async () => {
      last = await this.admin('updateTopic', '-t', topic, '-c', CLUSTER, '-r', String(queues), '-w', String(queues));
      return last.code === 0;
    }, {
      timeout: 15_000,
      interval: 500,
      what: `meridian admin updateTopic -t ${topic}`,
      diag: () => `last run: exit ${last && last.code}\nstdout: ${last && last.stdout}\nstderr: ${last && last.stderr}\n${this.diag()}`,
    });
    await this.waitForRoute(topic, { queues });
    return topic;
  }

  // ---- ali-ons clients -------------------------------------------------

  clientOptions(extra = {}) {
    return {
      nameSrv: this.namesrvAddr,
      httpclient: httpclientStub,
      logger: clientLogger,
      instanceName: uniq('inst'),
      pollNameServerInteval: CLIENT_INTERVAL_MS,
      heartbeatBrokerInterval: CLIENT_INTERVAL_MS,
      rebalanceInterval: CLIENT_INTERVAL_MS,
      persistConsumerOffsetInterval: CLIENT_INTERVAL_MS,
      ...extra,
    };
  }

  async _ensureInnerProducer() {
    if (!Producer.defaultProducer) {
      await Producer.getDefaultProducer(this.clientOptions({ instanceName: uniq('inner') }));
    }
  }

  _track(client, kind) {
    client.on('error', err => clientLogger.error('[%s error] %s', kind, err && (err.stack || err.message || err)));
    this.clients.push({ client, kind, closed: false });
    return client;
  }

  /** A started producer. */
  async producer(options = {}) {
    await this._ensureInnerProducer();
    const p = this._track(new Producer(this.clientOptions({ producerGroup: uniq('PG'), ...options })), 'producer');
    await p.ready();
    return p;
  }

  /**
   * A consumer; call `subscribe` and then `await consumer.ready()`.
   * Defaults to CONSUME_FROM_FIRST_OFFSET (tests use fresh topics).
   */
  async consumer(options = {}) {
    await this._ensureInnerProducer();
    return this._track(new Consumer(this.clientOptions({
      consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET',
      ...options,
    })), 'consumer');
  }

  async closeClient(client) {
    const entry = this.clients.find(e => e.client === client);
    if (!entry || entry.closed) return;
    entry.closed = true;
    await closeAliOns(client, 'closing an ali-ons client');
  }

  async closeClients() {
    const errors = [];
    for (const kind of [ 'consumer', 'producer' ]) {
      for (const entry of this.clients.filter(e => e.kind === kind && !e.closed)) {
        entry.closed = true;
        try {
          await closeAliOns(entry.client, `closing an ali-ons ${kind}`);
        } catch (err) {
          errors.push(err);
        }
      }
    }
    this.clients = [];
    const inner = Producer.defaultProducer;
    if (inner) {
      Producer.defaultProducer = null;
      try {
        await withTimeout(inner.close(), 10_000, 'closing the ali-ons inner producer');
      } catch (err) {
        errors.push(err);
      }
    }
    return errors;
  }

  /** Close clients, stop the process, remove the data directory. */
  async shutdown() {
    try {
      await this.closeClients();
    } finally {
      await this.stop();
      if (!process.env.MERIDIAN_TEST_KEEP_DATA) {
        fs.rmSync(this.dataDir, { recursive: true, force: true });
        dataDirs.delete(this.dataDir);
      }
    }
  }
}

/**
 * A `meridian relay` process copying `topics` from region `src` to region
 * `dst` (two objects with `namesrvAddr` and `brokerPort`: `Meridian`s or
 * `Region`s): its relay.conf in a temporary directory (`extra`: more keys,
 * or other values), started by `start()` (which waits for its ready
 * line), SIGKILLed by `kill()`.
 */
class Relay {
  constructor(src, dst, topics, extra = {}) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meridian-relay-'));
    dataDirs.add(this.dir);
    this.conf = path.join(this.dir, 'relay.conf');
    const conf = {
      srcClusterAddr: src.namesrvAddr,
      destClusterAddr: dst.namesrvAddr,
      replicationGroup: `relay-${src.brokerPort}-${dst.brokerPort}`,
      topics,
      routeRefreshIntervalMs: 500,
      offsetSyncIntervalMs: 500,
      ...extra,
    };
    fs.writeFileSync(this.conf, Object.entries(conf).map(([ k, v ]) => `${k}=${v}`).join('\n') + '\n');
    this.child = null;
    this.output = [];
  }

  async start() {
    const child = spawn(MERIDIAN_BIN, [ 'relay', '-c', this.conf ], {
      stdio: [ 'ignore', 'pipe', 'pipe' ],
      detached: true,
    });
    this.child = child;
    children.add(child);
    child.on('exit', () => children.delete(child));
    const collect = chunk => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line) this.output.push(line);
        if (VERBOSE && line) process.stderr.write(`[relay] ${line}\n`);
      }
      if (this.output.length > 500) this.output.splice(0, this.output.length - 500);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    await waitFor(() => this.output.some(l => l.includes('meridian relay ready')) || hasExited(child), {
      timeout: READY_TIMEOUT_MS, what: 'the relay to start', diag: () => tail(this.output, 40),
    });
    if (hasExited(child)) throw new Error(`the relay exited at start:\n${tail(this.output, 40)}`);
  }

  kill() {
    if (this.child && !hasExited(this.child)) killGroup(this.child, 'SIGKILL');
  }

  diag(n = 30) {
    return `relay output tail:\n${tail(this.output, n)}`;
  }
}

/**
 * Close an ali-ons producer or consumer. ali-ons stops its client's timers
 * only after every broker has answered the unregister; when a broker
 * refuses it (a client without valid credentials, under ACL) the timers
 * keep running and keep the test process alive. The client's tables are
 * empty by then, so closing the shared client itself finishes the job.
 */
async function closeAliOns(client, what) {
  try {
    await withTimeout(client.close(), 10_000, what);
  } catch (err) {
    if (client._mqClient) {
      await withTimeout(client._mqClient.close(), 10_000, what).catch(() => {});
    }
    throw err;
  }
}

async function withTimeout(promise, ms, what) {
  let timer;
  try {
    return await Promise.race([
      promise,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Declare a Meridian for the current test file: started in a `before` hook,
 * shut down (clients closed, process stopped, data removed) in an `after`
 * hook. Call at module top level.
 */
function useMeridian(options = {}) {
  const m = new Meridian(options);
  before(() => m.start());
  after(() => m.shutdown());
  return m;
}

/**
 * Whether `meridian admin` output shows a message: it names `msgId` or `key`,
 * or (unless `strict`) lists some 32-hex-digit message id.
 */
function adminShowsMessage(out, { key, msgId, strict = false } = {}) {
  if (msgId && out.toUpperCase().includes(msgId.toUpperCase())) return true;
  if (key && out.includes(key)) return true;
  return !strict && /\b[0-9A-F]{32}\b/i.test(out);
}

module.exports = {
  MERIDIAN_BIN,
  CLUSTER,
  CLIENT_INTERVAL_MS,
  VERBOSE,
  trackChild,
  tempDir,
  removeTempDir,
  killGroup,
  hasExited,
  tail,
  freePorts,
  randomPort,
  parseLooseJson,
  httpclientStub,
  closeAliOns,
  withTimeout,
  Meridian,
  Relay,
  Message,
  Producer,
  Consumer,
  Inbox,
  useMeridian,
  waitFor,
  sleep,
  uniq,
  shardingQueueId,
  shardingKeyForNonZeroQueue,
  ownedQueues,
  adminShowsMessage,
  remotingRequest,
  clientLogger,
};
