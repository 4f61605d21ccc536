'use strict';

// Regions for the ali-ons tests: each region a `meridian namesrv` and a
// `meridian broker`, separate processes (so a test can SIGKILL a whole
// region, and the name servers can watch each other with `regionPeers`),
// and a TCP gate a test puts in front of a name server to decide when
// clients can reach it. Every process is tracked by harness.js and killed
// on `after`, on exit and on signals.

const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const h = require('./harness');

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
/** Commit-log segment size of a region's broker: a run fits in little disk. */
const SEGMENT_BYTES = 8 * 1024 * 1024;
/** Output lines kept per process for failure messages. */
const KEPT_LINES = 1000;

/** One Meridian process (`meridian <args>`), its output kept for diagnostics. */
class Server {
  constructor(label, args, readyLine) {
    this.label = label;
    this.args = args;
    this.readyLine = readyLine;
    this.child = null;
    this.output = [];
  }

  get running() {
    return !!this.child && !h.hasExited(this.child);
  }

  async start() {
    const child = spawn(h.MERIDIAN_BIN, this.args, {
      stdio: [ 'ignore', 'pipe', 'pipe' ],
      detached: true,
      env: { ...process.env, RUST_BACKTRACE: process.env.RUST_BACKTRACE || '1' },
    });
    this.child = h.trackChild(child);
    let ready = false;
    const collect = chunk => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        this.output.push(line);
        if (line.includes(this.readyLine)) ready = true;
        if (h.VERBOSE) process.stderr.write(`[${this.label}] ${line}\n`);
      }
      if (this.output.length > KEPT_LINES) this.output.splice(0, this.output.length - KEPT_LINES);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    await h.waitFor(() => ready || h.hasExited(child), {
      timeout: READY_TIMEOUT_MS, what: `${this.label} to print "${this.readyLine}"`, diag: () => this.diag(),
    });
    if (!ready) throw new Error(`${this.label} exited at start:\n${this.diag()}`);
  }

  /** SIGKILL, and wait until it is gone. */
  async kill() {
    await this.stop({ signal: 'SIGKILL' });
  }

  /** `signal` (SIGTERM), then SIGKILL after STOP_TIMEOUT_MS. */
  async stop({ signal = 'SIGTERM' } = {}) {
    const child = this.child;
    if (!child) return;
    if (!h.hasExited(child)) {
      const exited = new Promise(resolve => child.once('exit', resolve));
      h.killGroup(child, signal);
      const timer = setTimeout(() => h.killGroup(child, 'SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    h.killGroup(child, 'SIGKILL');
  }

  diag(n = 30) {
    return `${this.label} (${this.running ? 'running' : 'not running'}) output tail:\n${h.tail(this.output, n)}`;
  }
}

/**
 * Region `name`: a name server on `nsPort` with `namesrvConf` keys (the
 * string `@DIR@` in a value is the region's temporary directory) and a
 * broker `broker-<name>` with `brokerConf` keys, both in `regionId=name`.
 */
class Region {
  constructor(name, { nsPort, namesrvConf = {}, brokerConf = {} }) {
    this.name = name;
    this.nsPort = nsPort;
    this.brokerPort = null;
    this.dir = h.tempDir(`meridian-region-${name}-`);
    this.namesrvConf = namesrvConf;
    this.brokerConf = brokerConf;
    this.namesrv = null;
    this.broker = null;
  }

  get namesrvAddr() {
    return `127.0.0.1:${this.nsPort}`;
  }

  get brokerAddr() {
    return `127.0.0.1:${this.brokerPort}`;
  }

  get brokerName() {
    return `broker-${this.name}`;
  }

  _write(file, conf) {
    const text = Object.entries(conf)
      .map(([ k, v ]) => `${k}=${String(v).replaceAll('@DIR@', this.dir)}`)
      .join('\n') + '\n';
    const p = path.join(this.dir, file);
    fs.writeFileSync(p, text);
    return p;
  }

  /** Start the name server, then the broker (each waits for its ready line). */
  async start() {
    if (this.brokerPort === null) this.brokerPort = (await h.freePorts()).broker;
    const nsConf = this._write('namesrv.conf', {
      listenPort: this.nsPort,
      bindAddress: '127.0.0.1',
      regionId: this.name,
      ...this.namesrvConf,
    });
    const brokerConf = this._write('broker.conf', {
      brokerClusterName: h.CLUSTER,
      brokerName: this.brokerName,
      regionId: this.name,
      listenPort: this.brokerPort,
      bindAddress: '127.0.0.1',
      brokerIP1: '127.0.0.1',
      namesrvAddr: this.namesrvAddr,
      storePathRootDir: path.join(this.dir, 'store'),
      mappedFileSizeCommitLog: SEGMENT_BYTES,
      ...this.brokerConf,
    });
    this.namesrv = new Server(`namesrv-${this.name}`, [ 'namesrv', '-c', nsConf ], 'meridian namesrv ready');
    await this.namesrv.start();
    this.broker = new Server(`broker-${this.name}`, [ 'broker', '-c', brokerConf ], 'meridian broker ready');
    await this.broker.start();
  }

  /** SIGKILL every process of the region at once. */
  async kill9() {
    await Promise.all([ this.namesrv, this.broker ].filter(Boolean).map(s => s.kill()));
  }

  /** Stop every process of the region and remove its directory. */
  async shutdown() {
    await Promise.all([ this.broker, this.namesrv ].filter(Boolean).map(s => s.stop()));
    h.removeTempDir(this.dir);
  }

  /** `meridian admin -n <this name server> <args...>`: { code, stdout, stderr }. */
  admin(...args) {
    return run([ 'admin', '-n', this.namesrvAddr, ...args ]);
  }

  /** What this region's name server says of the regions (`regionStatus --json`), or null. */
  async regionStatus() {
    const r = await run([ 'admin', '-n', this.namesrvAddr, '--json', 'regionStatus' ], { timeout: 5000 });
    if (r.code !== 0) return null;
    try {
      return JSON.parse(r.stdout);
    } catch (_) {
      return null;
    }
  }

  /** Create `topic` on the region's broker and wait until the name server routes it. */
  async createTopic(topic, queues = 4) {
    let last;
    await h.waitFor(async () => {
      last = await this.admin('updateTopic', '-t', topic, '-c', h.CLUSTER, '-r', String(queues), '-w', String(queues));
      return last.code === 0;
    }, {
      timeout: 20_000,
      interval: 300,
      what: `updateTopic -t ${topic} in ${this.name}`,
      diag: () => `last run: exit ${last && last.code}\n${last && last.stdout}${last && last.stderr}\n${this.diag()}`,
    });
    await h.waitFor(async () => {
      const resp = await h.remotingRequest(this.namesrvAddr, 105, { topic });
      if (resp.code !== 0 || !resp.body) return false;
      const route = h.parseLooseJson(resp.body.toString('utf8'));
      return (route.queueDatas || []).some(q => q.brokerName === this.brokerName && q.writeQueueNums === queues);
    }, { timeout: 20_000, interval: 200, what: `a route for ${topic} in ${this.name}`, diag: () => this.diag() });
  }

  diag(n = 30) {
    return [ this.namesrv, this.broker ].filter(Boolean).map(s => s.diag(n)).join('\n');
  }
}

/** Run `meridian <args>`; resolves to { code, stdout, stderr }. */
function run(args, { timeout = 20_000 } = {}) {
  return new Promise(resolve => {
    const child = execFile(h.MERIDIAN_BIN, args, { timeout, maxBuffer: 16 * 1024 * 1024, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        let code = 0;
        if (err) code = typeof err.code === 'number' ? err.code : (err.signal ? -1 : 1);
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      });
    h.trackChild(child);
  });
}

/**
 * A TCP gate in front of `target` ("host:port") on a port of its own.
 * Closed, it accepts each connection and resets it at once (the client
 * sees ECONNRESET and tries its next name server, as it would for a name
 * server that is down); open, it passes bytes both ways.
 */
class Gate {
  constructor(target) {
    const [ host, port ] = target.split(':');
    this.target = { host, port: Number(port) };
    this.open = false;
    this.refused = 0;
    this.passed = 0;
    this.sockets = new Set();
    this.server = net.createServer(socket => this._accept(socket));
  }

  get addr() {
    return `127.0.0.1:${this.server.address().port}`;
  }

  async start() {
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: '127.0.0.1', port: 0 }, resolve);
    });
    return this;
  }

  _accept(socket) {
    if (!this.open) {
      this.refused += 1;
      socket.resetAndDestroy();
      return;
    }
    this.passed += 1;
    const upstream = net.connect(this.target);
    for (const s of [ socket, upstream ]) {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => {});
    }
    socket.pipe(upstream);
    upstream.pipe(socket);
    socket.on('close', () => upstream.destroy());
    upstream.on('close', () => socket.destroy());
  }

  async close() {
    for (const s of this.sockets) s.destroy();
    await new Promise(resolve => this.server.close(() => resolve()));
  }
}

module.exports = { Region, Gate, run };
