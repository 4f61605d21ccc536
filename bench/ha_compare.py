#!/usr/bin/env python3
"""What replication costs a producer: one Meridian broker against a
SYNC_MASTER + SLAVE pair and a 3-member Raft group, on this machine.

One run: build Meridian (release; a no-op when it is up to date), then for
each round start every deployment in turn, each on fresh stores in a fresh
temporary directory with its own name server and ports, drive it with
`meridian bench produce`, stop it, and finally write the medians into the
"High availability: replication cost" section of docs/benchmarks.md (the
section is replaced, the rest of the file is kept).

Deployments, in this order in every round:
  single          one broker, ASYNC_MASTER, ASYNC_FLUSH
  sync-pair       SYNC_MASTER + SLAVE (brokerId=1), ASYNC_FLUSH; a send is
                  answered once the slave holds it
  raft-3          3-member Raft group (enableDLegerCommitLog), ASYNC_FLUSH
                  on each member; a send is answered once a majority has it
  sync-pair-35ms  sync-pair with the slave's replication connection through
                  `meridian netproxy --delay-ms 35` in front of the master's
                  haListenPort (haMasterAddress=<proxy>)
  raft-3-35ms     raft-3 with one netproxy per directed link i->j, listed in
                  member i's dLegerPeers for member j (the broker's default
                  Raft timeouts unless --raft-delayed-timeouts says otherwise)
(--delay-ms changes the 35 ms.)
The client and the name server talk to the brokers directly (no delay):
the client sits next to the master / leader.

Cases, per deployment and round (1 KiB bodies, sync sends, one connection):
  closed   --threads producer tasks (64), as fast as the answers come
  rate     --rate msg/s (2000) over --rate-threads tasks (512), open loop;
           a rate every deployment sustains, so the p99s compare. Enough
           tasks that a 70+ ms round trip never holds a task past its next
           intended send time.

Only the Python standard library is used; the process helpers come from
bench/compare.py. Every process this script starts is stopped by its pid,
also on an error or Ctrl-C; nothing else is touched.

Usage: bench/ha_compare.py [--rounds 3] [--duration 10] [--warmup 2]
                           [--threads 64] [--rate 2000] [--rate-threads 512]
                           [--delay-ms 35] [--raft-delayed-timeouts 300,1000,2000]
                           [--only single,raft-3,...] [--meridian PATH]
                           [--no-build] [--doc PATH] [--raw FILE]
       bench/ha_compare.py --quick        smoke run: 1 round of 2 s
       bench/ha_compare.py --render FILE  rewrite the doc from a saved run
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no bench/__pycache__ from importing compare.py
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (bench/compare.py: process and report helpers)
from compare import fmt_num, log, med, sh  # noqa: E402

REPO = compare.REPO
TOPIC = "BenchHA"
QUEUES = 8
CLUSTER = "DefaultCluster"
GROUP = "broker-a"
HEADING = "## High availability: replication cost"
SCRIPT = "bench/ha_compare.py"

DEPLOYMENTS = ["single", "sync-pair", "raft-3", "sync-pair-35ms", "raft-3-35ms"]
DESCRIPTION = {
    "single": "one broker",
    "sync-pair": "SYNC_MASTER + SLAVE",
    "raft-3": "3-member Raft group",
    "sync-pair-35ms": "SYNC_MASTER + SLAVE",
    "raft-3-35ms": "3-member Raft group",
}

DEFAULT_MERIDIAN = compare.MERIDIAN
MERIDIAN = DEFAULT_MERIDIAN


# ---------------------------------------------------------------- helpers

def free_ports(n):
    """`n` distinct ports that were free on 127.0.0.1 a moment ago: bound to
    port 0 together (so the kernel hands out different ones), then released
    for the processes."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def admin(ns_addr, *args, timeout=30):
    """`meridian admin -n <ns> <args>`: (returncode, stdout, stderr)."""
    try:
        r = subprocess.run([MERIDIAN, "admin", "-n", ns_addr, *args],
                           capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired:
        return -1, "", f"`meridian admin {' '.join(args)}` timed out after {timeout}s"


def cluster_list(ns_addr):
    """The brokers the name server knows, each with its runtime info."""
    rc, out, _ = admin(ns_addr, "--json", "clusterList", timeout=15)
    if rc != 0:
        return []
    try:
        return json.loads(out).get("brokers", [])
    except ValueError:
        return []


def proxy_command(control_addr, command, timeout=5):
    host, port = control_addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout) as s:
        s.sendall(f"{command}\n".encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(1024)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace").strip()


def proxy_connections(control_addr):
    try:
        status = proxy_command(control_addr, "status")
    except OSError:
        return None
    m = re.search(r"connections=(\d+)", status)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------- deployments

class Deployment:
    """A name server and the brokers (and proxies) of one deployment, in a
    fresh directory of their own."""

    def __init__(self, kind, workdir, delay_ms, raft_delayed_timeouts=None):
        self.kind = kind
        self.delay_ms = delay_ms if kind.endswith("-35ms") else 0
        # (heartbeat, election min, election max) ms for a delayed Raft
        # group, or None for the defaults; see --raft-delayed-timeouts.
        self.raft_timeouts = raft_delayed_timeouts if self.delay_ms else None
        self.dir = tempfile.mkdtemp(prefix=f"{kind}-", dir=workdir)
        (self.ns_port,) = free_ports(1)
        self.ns_addr = f"127.0.0.1:{self.ns_port}"
        self.ns = None
        self.brokers = []      # [(name, Popen, client addr)]
        self.proxies = []      # [(name, Popen, listen addr, control addr)]
        self.leader_addr = None
        self.info = {}         # what was checked at start, for the raw output

    # -- processes

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_proxy(self, name, target):
        logname = f"{name}.log"
        p = compare.start([MERIDIAN, "netproxy", "--listen", "127.0.0.1:0", "--target", target,
                           "--delay-ms", str(self.delay_ms), "--control", "127.0.0.1:0"],
                          self.dir, logname)
        path = os.path.join(self.dir, logname)
        deadline = time.time() + 30
        while time.time() < deadline:
            with open(path, errors="replace") as f:
                for line in f:
                    m = re.match(r"^listening (\S+) control (\S+)\s*$", line)
                    if m:
                        self.proxies.append((name, p, m.group(1), m.group(2)))
                        return m.group(1)
            if p.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"netproxy {name} did not print its addresses; its log:\n{self.tail(logname)}")

    def start_broker(self, name, lines):
        conf = self.write(f"{name}.conf", "\n".join(lines) + "\n")
        p = compare.start([MERIDIAN, "broker", "-c", conf], self.dir, f"{name}.log")
        port = next(int(l.split("=", 1)[1]) for l in lines if l.startswith("listenPort="))
        self.brokers.append((name, p, f"127.0.0.1:{port}"))

    def common(self, name, port):
        return [
            f"brokerClusterName={CLUSTER}",
            f"brokerName={GROUP}",
            "brokerIP1=127.0.0.1",
            f"listenPort={port}",
            f"namesrvAddr={self.ns_addr}",
            f"storePathRootDir={os.path.join(self.dir, 'store-' + name)}",
            "flushDiskType=ASYNC_FLUSH",
            "autoCreateTopicEnable=true",
            # As compare.py: a shared machine's disk may be past the 75%
            # at which brokers start deleting segments by default.
            "diskMaxUsedSpaceRatio=90",
        ]

    def start(self):
        ns_conf = self.write("namesrv.conf", f"listenPort={self.ns_port}\n")
        self.ns = compare.start([MERIDIAN, "namesrv", "-c", ns_conf], self.dir, "namesrv.log")
        compare.wait_port(self.ns_port, self.ns)
        if self.kind == "single":
            port, ha = free_ports(2)
            self.start_broker("broker", self.common("broker", port) + [
                "brokerId=0", "brokerRole=ASYNC_MASTER", f"haListenPort={ha}"])
        elif self.kind.startswith("sync-pair"):
            mport, mha, sport, sha = free_ports(4)
            ha_addr = f"127.0.0.1:{mha}"
            if self.delay_ms:
                ha_addr = self.start_proxy("proxy-slave-to-master-ha", ha_addr)
            self.start_broker("master", self.common("master", mport) + [
                "brokerId=0", "brokerRole=SYNC_MASTER", f"haListenPort={mha}"])
            self.start_broker("slave", self.common("slave", sport) + [
                "brokerId=1", "brokerRole=SLAVE", f"haListenPort={sha}",
                f"haMasterAddress={ha_addr}"])
        elif self.kind.startswith("raft-3"):
            ports = free_ports(6)
            client_ports, raft_ports = ports[:3], ports[3:]
            # peers[i][j]: where member i reaches member j.
            peers = [[f"127.0.0.1:{raft_ports[j]}" for j in range(3)] for _ in range(3)]
            if self.delay_ms:
                for i in range(3):
                    for j in range(3):
                        if i != j:
                            peers[i][j] = self.start_proxy(f"proxy-n{i}-to-n{j}",
                                                           f"127.0.0.1:{raft_ports[j]}")
            timeouts = []
            if self.raft_timeouts:
                hb, lo, hi = self.raft_timeouts
                timeouts = [f"raftHeartbeatIntervalMs={hb}", f"raftElectionTimeoutMinMs={lo}",
                            f"raftElectionTimeoutMaxMs={hi}"]
            for i in range(3):
                dpeers = ";".join(f"n{j}-{peers[i][j]}" for j in range(3))
                self.start_broker(f"n{i}", self.common(f"n{i}", client_ports[i]) + [
                    "enableDLegerCommitLog=true", f"dLegerGroup={GROUP}",
                    f"dLegerPeers={dpeers}", f"dLegerSelfId=n{i}"] + timeouts)
        else:
            raise ValueError(kind)
        self.wait_ready()
        self.create_topic()

    def wait_ready(self, timeout=90):
        """Until the master / Raft leader is registered as brokerId 0 and
        every other member is registered too; for the pair, until the master
        streams to its slave; for a delayed deployment, until the
        replication connections go through the proxies."""
        deadline = time.time() + timeout
        want = len(self.brokers)
        last = None
        while time.time() < deadline:
            for name, p, _ in self.brokers:
                if p.poll() is not None:
                    raise RuntimeError(f"{self.kind}: {name} exited with {p.returncode}; "
                                       f"its log ends with:\n{self.tail(name + '.log')}")
            brokers = [b for b in cluster_list(self.ns_addr) if b.get("brokerName") == GROUP]
            master = next((b for b in brokers if b.get("brokerId") == 0), None)
            last = [(b.get("brokerId"), b.get("addr"), (b.get("runtime") or {}).get("brokerRole"))
                    for b in brokers]
            ok = master is not None and len(brokers) >= want
            if ok:
                rt = master.get("runtime") or {}
                if self.kind.startswith("sync-pair"):
                    ok = rt.get("brokerRole") == "SyncMaster" and rt.get("haConnectedSlaves") == "1"
                elif self.kind.startswith("raft-3"):
                    ok = rt.get("brokerRole") == "SyncMaster"
            if ok and self.delay_ms:
                conns = {name: proxy_connections(ctl) for name, _, _, ctl in self.proxies}
                self.info["proxy_connections"] = conns
                if self.kind.startswith("sync-pair"):
                    ok = all((c or 0) >= 1 for c in conns.values())
                else:
                    # The leader's links to both followers carry its appends.
                    li = next(i for i, (_, _, a) in enumerate(self.brokers) if a == master["addr"])
                    ok = all((conns.get(f"proxy-n{li}-to-n{j}") or 0) >= 1
                             for j in range(3) if j != li)
            if ok:
                self.leader_addr = master["addr"]
                self.info["leader"] = next(n for n, _, a in self.brokers if a == self.leader_addr)
                self.info["registered"] = last
                return
            time.sleep(0.3)
        conns = self.info.get("proxy_connections")
        raise RuntimeError(f"{self.kind}: no master / leader ready after {timeout}s (registered "
                           f"[brokerId, addr, brokerRole]: {last}"
                           + (f"; proxy connections: {conns}" if conns else "") + ")\nlogs:\n" +
                           "\n".join(f"--- {n}\n{self.tail(n + '.log')}" for n, _, _ in self.brokers))

    def create_topic(self, timeout=60):
        rc, out, err = admin(self.ns_addr, "updateTopic", "-c", CLUSTER, "-t", TOPIC,
                             "-r", str(QUEUES), "-w", str(QUEUES))
        if rc != 0:
            raise RuntimeError(f"{self.kind}: updateTopic failed ({rc}): {err or out}")
        deadline = time.time() + timeout
        while time.time() < deadline:
            rc, out, _ = admin(self.ns_addr, "--json", "topicRoute", "-t", TOPIC, timeout=15)
            if rc == 0 and self.leader_addr in out and '"writeQueueNums"' in out:
                return
            time.sleep(0.3)
        raise RuntimeError(f"{self.kind}: topic {TOPIC} has no route after {timeout}s")

    def tail(self, logname, n=2000):
        try:
            with open(os.path.join(self.dir, logname), errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return "(no log)"

    def pids(self):
        return {
            "leader": [p.pid for _, p, a in self.brokers if a == self.leader_addr],
            "others": [p.pid for _, p, a in self.brokers if a != self.leader_addr],
            "proxies": [p.pid for _, p, _, _ in self.proxies],
        }

    def stop(self):
        """Stop every process (brokers, then proxies, then the name server)
        and remove the directory; keeps going past errors."""
        procs = [p for _, p, _ in self.brokers] + [p for _, p, _, _ in self.proxies]
        if self.ns is not None:
            procs.append(self.ns)
        for p in procs:
            try:
                compare.stop(p)
            except Exception as e:  # keep stopping the others
                log(f"{self.kind}: stopping pid {p.pid}: {e}")
        self.brokers, self.proxies, self.ns = [], [], None
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- bench runs

def cpu(pids):
    total = 0.0
    for pid in pids:
        try:
            total += compare.cpu_seconds(pid)
        except OSError:
            pass
    return total


def bench(dep, args, timeout):
    """`meridian bench produce -n <ns> <args> --json` against `dep`: its
    report, plus the CPU the leader, the other brokers, the proxies and the
    client used (in cores, over the whole run, warm-up included)."""
    cmd = [MERIDIAN, "bench", "produce", "-n", dep.ns_addr, *args, "--json"]
    out_path = os.path.join(dep.dir, "bench.out")
    err_path = os.path.join(dep.dir, "bench.err")
    groups = dep.pids()
    cpu0 = {k: cpu(v) for k, v in groups.items()}
    t0 = time.time()
    with open(out_path, "wb") as out, open(err_path, "ab") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        compare.CHILDREN.append(p)
        try:
            deadline = t0 + timeout
            while True:
                pid, status, usage = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    p.returncode = os.waitstatus_to_exitcode(status)
                    break
                if time.time() > deadline:
                    p.kill()
                    pid, status, usage = os.wait4(p.pid, 0)
                    p.returncode = -9
                    break
                time.sleep(0.05)
        finally:
            if p.returncode is None and p.poll() is None:
                p.kill()
                p.wait()
            if p in compare.CHILDREN:
                compare.CHILDREN.remove(p)
    wall = time.time() - t0
    with open(out_path) as f:
        text = f.read().strip()
    if p.returncode != 0 or not text:
        with open(err_path, errors="replace") as f:
            tail = f.read()[-2000:]
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({p.returncode}):\n{tail}")
    report = json.loads(text)
    for k, v in groups.items():
        report[f"cpu_{k}_cores"] = (cpu(v) - cpu0[k]) / wall
    report["cpu_client_cores"] = (usage.ru_utime + usage.ru_stime) / wall
    report["command_line"] = " ".join(["meridian", "bench", "produce", "-n", "<namesrv>", *args, "--json"])
    return report


def produce_args(opts, threads, extra=()):
    return ["-t", TOPIC, "--queues", str(QUEUES), "-w", str(threads), "-s", "1024",
            "--duration", f"{opts.duration:g}", "--warmup", f"{opts.warmup:g}", *extra]


def raft_timeouts(opts):
    v = opts.raft_delayed_timeouts
    if not v or v == "default":
        return None
    return tuple(int(x) for x in v.split(","))


def run_deployment(kind, workdir, opts, results, infos):
    dep = Deployment(kind, workdir, opts.delay_ms, raft_timeouts(opts))
    log(f"{kind}: starting in {dep.dir}")
    try:
        t0 = time.time()
        dep.start()
        info = dict(dep.info, ready_secs=round(time.time() - t0, 2))
        infos.setdefault(kind, []).append(info)
        log(f"{kind}: ready in {info['ready_secs']:.1f} s, leader/master {info.get('leader')} "
            f"at {dep.leader_addr}"
            + (f", proxy connections {info['proxy_connections']}" if "proxy_connections" in info else ""))
        timeout = opts.duration + opts.warmup + 120

        def case(name, args):
            r = bench(dep, args, timeout)
            results.setdefault(kind, {}).setdefault(name, []).append(r)
            lat = r["latency_ms"]
            log(f"{kind}: {name}: {r['msgs_per_sec']:.0f} msg/s, p50 {lat['p50']:.3f} ms, "
                f"p99 {lat['p99']:.3f} ms, errors {r['errors']}, cpu leader "
                f"{r['cpu_leader_cores']:.2f} others {r['cpu_others_cores']:.2f} "
                f"proxies {r['cpu_proxies_cores']:.2f} client {r['cpu_client_cores']:.2f}"
                + (f", first error: {r['first_error']}" if r.get("first_error") else ""))

        case("closed", produce_args(opts, opts.threads))
        case("rate", produce_args(opts, opts.rate_threads, ["--rate", f"{opts.rate:g}"]))
        if opts.async_threads > 0:
            case("async", produce_args(opts, opts.async_threads,
                                       ["--mode", "async", "--inflight", str(opts.async_inflight)]))
    finally:
        dep.stop()


# ---------------------------------------------------------------- report

def metric(results, kind, case, key):
    vals = []
    for r in results.get(kind, {}).get(case, []):
        v = r
        for k in key.split("."):
            v = v[k]
        vals.append(v)
    return med(vals), vals


def label(kind, delay_ms):
    """A deployment's name as shown: the delayed ones carry the delay used."""
    return kind.replace("-35ms", f"-{delay_ms}ms")


def times(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.{digits}f}×"


def command_line(opts):
    return (f"python3 {SCRIPT} --rounds {opts.rounds} --duration {opts.duration:g} "
            f"--warmup {opts.warmup:g} --threads {opts.threads} --rate {opts.rate:g} "
            f"--rate-threads {opts.rate_threads} --delay-ms {opts.delay_ms}"
            f" --raft-delayed-timeouts {opts.raft_delayed_timeouts}"
            + (f" --only {opts.only}" if opts.only else ""))


def render(run):
    opts = argparse.Namespace(**run["options"])
    results, infos, mach = run["results"], run["infos"], run["machine"]
    started = datetime.datetime.fromisoformat(run["started"])
    kinds = [k for k in DEPLOYMENTS if k in results or k in run["failures"]]
    d = opts.delay_ms
    out = []
    add = out.append
    add(HEADING)
    add("")
    add(f"Generated by `{command_line(opts)}` on {started:%Y-%m-%d %H:%M} UTC in "
        f"{run['elapsed'] / 60:.1f} min, Meridian at `{run['rev']}`. The script rewrites this "
        f"whole section on every run (edit the script, not the section).")
    add("")
    add("**Machine.** " + "; ".join([
        f"{mach['nproc']} CPUs ({mach['cpu']})", f"{mach['memory']} RAM",
        f"kernel {mach['kernel']}", f"disk {mach['disk']}", mach["rustc"],
        "client, name server, brokers and proxies on the same machine",
        "1-minute load average {:.2f} before the run and {:.2f} after it "
        "(the machine may be shared)".format(*run["loads"])]) + ".")
    add("")
    add("Deployments, each with a name server of its own on loopback, every broker "
        "`flushDiskType=ASYNC_FLUSH`:")
    add("")
    add("- **single**: one broker, `brokerRole=ASYNC_MASTER`.")
    add("- **sync-pair**: `brokerRole=SYNC_MASTER` and `brokerRole=SLAVE brokerId=1` with "
        "`haMasterAddress` = the master's `haListenPort`; a send is answered once the slave "
        "holds it.")
    add("- **raft-3**: three brokers with `enableDLegerCommitLog=true`, `dLegerGroup=broker-a`, "
        "`dLegerPeers=n0-…;n1-…;n2-…`, `dLegerSelfId=n<i>`; a send is answered once a majority "
        "(the leader and one follower) has it.")
    add(f"- **sync-pair-{d}ms**, **raft-3-{d}ms**: the same, with `meridian netproxy --delay-ms {d}` "
        f"on every replication link ({d} ms one way, so a round trip between brokers takes at "
        f"least {2 * d} ms): one proxy in front of the master's `haListenPort`, given to the "
        "slave as `haMasterAddress`; for Raft one proxy per directed link i→j, listed in member "
        "i's `dLegerPeers` for member j. Client and name-server traffic is not delayed (the "
        "client sits next to the master / leader).")
    rt = raft_timeouts(opts)
    if rt:
        add("")
        add(f"raft-3-{d}ms runs with `raftHeartbeatIntervalMs={rt[0]}`, "
            f"`raftElectionTimeoutMinMs={rt[1]}`, `raftElectionTimeoutMaxMs={rt[2]}` (defaults "
            "100, 400, 800).")
    add("")
    add(f"Each round starts every deployment in turn ({', '.join(label(k, d) for k in kinds)}) on fresh stores "
        f"in a fresh directory, waits until the master / Raft leader is registered as broker id 0 "
        f"(the master streaming to its slave; the delayed links connected through the proxies), "
        f"creates the topic with `meridian admin updateTopic -c {CLUSTER} -t {TOPIC} -r {QUEUES} "
        f"-w {QUEUES}`, runs the two cases below, each {opts.warmup:g} s of warm-up then "
        f"{opts.duration:g} s measured, and stops it. Medians of {opts.rounds} "
        f"round{'s' if opts.rounds != 1 else ''}. 1 KiB bodies, sync sends (one request in "
        f"flight per producer task), one connection.")
    add("")
    add(f"- **closed loop**: {opts.threads} producer tasks sending as fast as the answers come.")
    if opts.async_threads > 0:
        add(f"- **async**: {opts.async_threads} producer tasks with up to {opts.async_inflight} "
            f"sends each in flight on the connection (`--mode async`), as fast as the answers come.")
    add(f"- **fixed rate**: {fmt_num(opts.rate)} msg/s over {opts.rate_threads} tasks, open loop "
        f"(latency counts from each send's intended time). The rate is one every deployment "
        f"should sustain, so the p99s compare; the tasks are enough that a send taking "
        f"{4 * d} ms (waiting behind a replication round trip in flight, then its own) does not "
        f"hold a task past its next send time ({fmt_num(opts.rate)} msg/s × {4 * d} ms = "
        f"{fmt_num(opts.rate * 4 * d / 1000)} in flight).")
    add("")
    for kind, err in run["failures"].items():
        add(f"**{label(kind, d)} failed** in {len(err)} of {opts.rounds} rounds: "
            + "; ".join(f"round {r}: {e.splitlines()[0] if e else e}" for r, e in err) + ".")
        add("")
    S = "single"
    s_rate, _ = metric(results, S, "closed", "msgs_per_sec")
    s_p99c, _ = metric(results, S, "closed", "latency_ms.p99")
    s_p99r, _ = metric(results, S, "rate", "latency_ms.p99")
    s_p50r, _ = metric(results, S, "rate", "latency_ms.p50")
    has_async = any("async" in results.get(k, {}) for k in kinds)
    async_head = (f" msg/s, async ({opts.async_threads} × {opts.async_inflight} in flight) | "
                  f"p99 ms, async |") if has_async else ""
    add(f"| deployment | replication link | msg/s, {opts.threads} producers | × single | p50 ms | "
        f"p99 ms | p50 ms at {fmt_num(opts.rate)} msg/s | p99 ms at {fmt_num(opts.rate)} msg/s | "
        f"p99 × single | sustained |{async_head}")
    add("|---|---|---:|---:|---:|---:|---:|---:|---:|---|" + ("---:|---:|" if has_async else ""))
    for k in kinds:
        if k not in results:
            continue
        rate, _ = metric(results, k, "closed", "msgs_per_sec")
        p50c, _ = metric(results, k, "closed", "latency_ms.p50")
        p99c, _ = metric(results, k, "closed", "latency_ms.p99")
        p50r, _ = metric(results, k, "rate", "latency_ms.p50")
        p99r, _ = metric(results, k, "rate", "latency_ms.p99")
        got, gots = metric(results, k, "rate", "msgs_per_sec")
        errs = sum(r["errors"] for c in results[k].values() for r in c)
        sustained = "–"
        if gots:
            short = [g for g in gots if g < 0.97 * opts.rate]
            sustained = "yes" if not short else f"**no** ({fmt_num(min(gots))} msg/s)"
        link = "loopback" if not k.endswith("ms") else f"+{d} ms each way"
        if k == S:
            link = "–"
        async_cells = ""
        if has_async:
            arate, _ = metric(results, k, "async", "msgs_per_sec")
            ap99, _ = metric(results, k, "async", "latency_ms.p99")
            async_cells = f" {fmt_num(arate)} | {fmt_num(ap99, 3)} |"
        add(f"| {label(k, d)} ({DESCRIPTION[k]}) | {link} | {fmt_num(rate)} | {times(rate, s_rate)} | "
            f"{fmt_num(p50c, 3)} | {fmt_num(p99c, 3)} | {fmt_num(p50r, 3)} | {fmt_num(p99r, 3)} | "
            f"{times(p99r, s_p99r)} | {sustained}{f', {errs} errors' if errs else ''} |{async_cells}")
    add("")
    add("CPU during each case (cores, warm-up included; the machine has "
        f"{mach['nproc']}): the master / leader, the other brokers, the proxies, the client.")
    add("")
    add("| deployment | case | master / leader | others | proxies | client |")
    add("|---|---|---:|---:|---:|---:|")
    for k in kinds:
        for case in ("closed", "rate", "async"):
            if case not in results.get(k, {}):
                continue
            vals = [fmt_num(metric(results, k, case, f"cpu_{g}_cores")[0], 2)
                    for g in ("leader", "others", "proxies", "client")]
            add(f"| {label(k, d)} | {case} | " + " | ".join(vals) + " |")
    add("")
    add("<details><summary>Every round</summary>")
    add("")
    add("| deployment | case | msg/s per round | p50 ms per round | p99 ms per round | errors | "
        "ready after (s) |")
    add("|---|---|---|---|---|---:|---|")
    for k in kinds:
        ready = ", ".join(f"{i['ready_secs']:.1f}" for i in infos.get(k, []))
        for case, runs in results.get(k, {}).items():
            add(f"| {label(k, d)} | {case} | " + ", ".join(fmt_num(r["msgs_per_sec"]) for r in runs)
                + " | " + ", ".join(fmt_num(r["latency_ms"]["p50"], 3) for r in runs)
                + " | " + ", ".join(fmt_num(r["latency_ms"]["p99"], 3) for r in runs)
                + f" | {sum(r['errors'] for r in runs)} | {ready} |")
    add("")
    add("</details>")
    add("")
    add("Commands each case ran (`<namesrv>` is the deployment's name server):")
    add("")
    add("```")
    seen = set()
    for k in kinds:
        for case, runs in results.get(k, {}).items():
            line = runs[0]["command_line"]
            if line not in seen:
                seen.add(line)
                add(f"{case:>7}: {line}")
    add("```")
    add("")
    return "\n".join(out)


def write_doc(path, section):
    """Replace the section under HEADING (up to the next `## ` heading) or
    append it; the rest of the file is kept as it is."""
    text = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    lines = text.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.rstrip() == HEADING), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section if text else "# Benchmarks\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        rest = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + rest if rest else "")
    if not new.endswith("\n"):
        new += "\n"
    with open(path, "w") as f:
        f.write(new)


def publish(run, doc):
    section = render(run)
    write_doc(doc, section)
    print(section)
    log(f"wrote {doc}")


# ---------------------------------------------------------------- main

def build():
    log("building Meridian (release; a no-op when it is up to date)")
    r = subprocess.run(["nice", "-n", "10", "cargo", "build", "--release", "-p", "meridian"], cwd=REPO)
    if r.returncode != 0:
        sys.exit(f"`cargo build --release -p meridian` failed with {r.returncode} "
                 f"(--no-build runs the existing {DEFAULT_MERIDIAN} as it is)")


def check_binary():
    if not os.path.exists(MERIDIAN):
        sys.exit(f"{MERIDIAN} is missing (run without --no-build)")
    r = subprocess.run([MERIDIAN, "netproxy", "--help"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{MERIDIAN} has no `netproxy` subcommand: it is older than this script "
                 "(run without --no-build)")


def main():
    global MERIDIAN
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10, help="seconds measured per case")
    ap.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per case")
    ap.add_argument("--threads", type=int, default=64, help="producer tasks, closed loop")
    ap.add_argument("--async-threads", type=int, default=64,
                    help="producer tasks of the async closed-loop case (0: no such case)")
    ap.add_argument("--async-inflight", type=int, default=64,
                    help="requests in flight per task in the async case")
    ap.add_argument("--rate", type=float, default=2000, help="msg/s of the fixed-rate case")
    ap.add_argument("--rate-threads", type=int, default=512, help="producer tasks, fixed rate")
    ap.add_argument("--delay-ms", type=int, default=35, help="one-way delay on the delayed links")
    ap.add_argument("--raft-delayed-timeouts", default="default", metavar="HB,MIN,MAX",
                    help="raftHeartbeatIntervalMs, raftElectionTimeoutMinMs, raftElectionTimeoutMaxMs "
                         "of the delayed Raft group, or `default` for the broker's 100,400,800. "
                         "Default: %(default)s")
    ap.add_argument("--only", default=None,
                    help="comma-separated deployments to run (default: all of " + ",".join(DEPLOYMENTS) + ")")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 round, 2 s measured, 1 s warm-up (its numbers mean nothing)")
    ap.add_argument("--no-build", action="store_true", help="use the existing release binary")
    ap.add_argument("--meridian", default=MERIDIAN, help="the meridian binary (default: %(default)s)")
    ap.add_argument("--workdir", default=None, help="parent of the stores (default: the system temp dir)")
    ap.add_argument("--doc", default=os.path.join(REPO, "docs", "benchmarks.md"))
    ap.add_argument("--no-doc", action="store_true", help="print the section, do not write the doc")
    ap.add_argument("--raw", default=None, help="also write every report as JSON here")
    ap.add_argument("--render", default=None, metavar="RAW",
                    help="run nothing: write the doc from a run saved with --raw")
    opts = ap.parse_args()
    if opts.render:
        with open(opts.render) as f:
            publish(json.load(f), opts.doc)
        return
    if opts.quick:
        opts.rounds, opts.duration, opts.warmup = 1, 2, 1
    if opts.raft_delayed_timeouts != "default":
        try:
            hb, lo, hi = (int(x) for x in opts.raft_delayed_timeouts.split(","))
            assert 0 < hb < lo < hi
        except (ValueError, AssertionError):
            sys.exit("--raft-delayed-timeouts wants HB,MIN,MAX in ms with HB < MIN < MAX, or `default`")
    kinds = DEPLOYMENTS
    if opts.only:
        kinds = [k.strip() for k in opts.only.split(",") if k.strip()]
        bad = [k for k in kinds if k not in DEPLOYMENTS]
        if bad:
            sys.exit(f"unknown deployment(s) {bad}; choose from {DEPLOYMENTS}")
    # compare.py's helpers (start, wait_port, wait_registered) use its MERIDIAN.
    MERIDIAN = compare.MERIDIAN = os.path.abspath(opts.meridian)

    signal.signal(signal.SIGINT, compare.stop_all_children)
    signal.signal(signal.SIGTERM, compare.stop_all_children)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.time()
    if not opts.no_build and MERIDIAN == DEFAULT_MERIDIAN:
        build()
    check_binary()
    rev = sh(f"git -C {REPO} rev-parse --short HEAD") or "unknown"
    if sh(f"git -C {REPO} status --porcelain --untracked-files=no"):
        rev += " with uncommitted changes"

    load_before = os.getloadavg()[0]
    workdir = tempfile.mkdtemp(prefix="meridian-ha-compare-", dir=opts.workdir)
    results, infos, failures = {}, {}, {}
    try:
        for r in range(opts.rounds):
            log(f"round {r + 1} of {opts.rounds}")
            for kind in kinds:
                try:
                    run_deployment(kind, workdir, opts, results, infos)
                except Exception as e:
                    log(f"{kind}: failed: {e}")
                    failures.setdefault(kind, []).append((r + 1, str(e)))
    finally:
        # Anything still running (a deployment stops its own processes;
        # this is for an error between starting and tracking one).
        for p in list(compare.CHILDREN):
            try:
                compare.stop(p, timeout=10)
            except Exception:
                pass
        shutil.rmtree(workdir, ignore_errors=True)
    run = {
        "results": results,
        "infos": infos,
        "failures": failures,
        "options": vars(opts),
        "machine": compare.machine(opts.workdir or tempfile.gettempdir()),
        "started": started.isoformat(),
        "elapsed": time.time() - t0,
        "rev": rev,
        "loads": [load_before, os.getloadavg()[0]],
    }
    if opts.raw:
        with open(opts.raw, "w") as f:
            json.dump(run, f, indent=1)
    if opts.no_doc:
        print(render(run))
    else:
        publish(run, opts.doc)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
