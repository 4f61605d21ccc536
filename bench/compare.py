#!/usr/bin/env python3
"""Side-by-side benchmark of Meridian and rocketmq-rust on this machine.

One run: build Meridian (release) and rocketmq-rust's name server and broker
(crates.io `rocketmq-namesrv` / `rocketmq-broker`, pinned, built once into a
cache outside the repository), then for each round start every system in
turn on a fresh store in one temporary directory (A B A B ...), drive it with
the same `meridian bench` commands, stop it, and finally write the medians
into docs/benchmarks.md between its `compare:begin` / `compare:end` markers.

Systems:
  meridian             Meridian, ASYNC_FLUSH
  rocketmq-rust        rocketmq-rust 1.0.0 with its defaults, ASYNC_FLUSH
  rocketmq-rust-nomb   the same with commitLogMicroBatchEnabled=false (its
                       append micro-batching waits on a timer; see the doc)
  meridian-sync        Meridian, SYNC_FLUSH (group commit), 64 producers only

Only the Python standard library is used. Every process this script starts
is stopped by its pid; nothing else is touched.

Usage: bench/compare.py [--rounds 3] [--duration 10] [--warmup 3]
                        [--backlog 1000000] [--no-peer] [--doc PATH]
                        [--raw FILE]      also save every report as JSON
       bench/compare.py --render FILE     rewrite the doc from a saved run
"""

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MERIDIAN = os.path.join(REPO, "target", "release", "meridian")
PEER_VERSION = "1.0.0"
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "meridian-bench")
PEER_ROOT = os.path.join(CACHE, f"rocketmq-rust-{PEER_VERSION}")
PEER_TARGET = os.path.join(CACHE, "target")
PEER_NAMESRV = os.path.join(PEER_ROOT, "bin", "rocketmq-namesrv-rust")
PEER_BROKER = os.path.join(PEER_ROOT, "bin", "rocketmq-broker-rust")
PEER_INSTALL = [
    "nice", "-n", "10", "cargo", "install", "--locked", "--root", PEER_ROOT,
    f"rocketmq-namesrv@={PEER_VERSION}", f"rocketmq-broker@={PEER_VERSION}",
]

TOPIC = "BenchCompare"
BACKLOG_TOPIC = "BenchBacklog"
QUEUES = 8
BEGIN = "<!-- compare:begin -->"
END = "<!-- compare:end -->"

CHILDREN = []


def log(msg):
    print(f"[{datetime.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

def start(cmd, cwd, logname, env=None):
    out = open(os.path.join(cwd, logname), "ab")
    p = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, env=env)
    CHILDREN.append(p)
    return p


def stop(p, timeout=30):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in CHILDREN:
        CHILDREN.remove(p)


def stop_all_children(*_):
    for p in list(CHILDREN):
        try:
            stop(p, timeout=10)
        except Exception:
            pass
    sys.exit(130)


def port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def free_ports():
    """A name server port and a broker port p, with p-2 (rocketmq-rust's
    fast listener) and p+1 (its HA listener) free too."""
    for _ in range(1000):
        ns = random.randint(20000, 45000)
        broker = ns + 10
        if all(port_free(x) for x in (ns, broker - 2, broker, broker + 1)):
            return ns, broker
    raise RuntimeError("no free ports found")


def wait_port(port, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def wait_registered(ns_addr, broker_addr, proc, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode} before registering")
        r = subprocess.run([MERIDIAN, "admin", "-n", ns_addr, "--json", "clusterList"],
                           capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            try:
                brokers = json.loads(r.stdout).get("brokers", [])
                if any(b.get("addr") == broker_addr for b in brokers):
                    return
            except ValueError:
                pass
        time.sleep(0.3)
    raise RuntimeError(f"broker {broker_addr} did not register with {ns_addr} in {timeout}s")


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "Threads"):
                out[k] = int(v.split()[0])
    return out


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- systems

class System:
    """A name server and a broker on a fresh store."""

    def __init__(self, kind, workdir):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix=f"{kind}-", dir=workdir)
        self.store = os.path.join(self.dir, "store")
        os.makedirs(self.store)
        self.ns_port, self.broker_port = free_ports()
        self.ns_addr = f"127.0.0.1:{self.ns_port}"
        self.broker_addr = f"127.0.0.1:{self.broker_port}"
        self.procs = []
        self.broker = None

    def broker_conf(self):
        flush = "SYNC_FLUSH" if self.kind == "meridian-sync" else "ASYNC_FLUSH"
        lines = [
            "brokerClusterName=DefaultCluster",
            "brokerName=broker-a",
            "brokerId=0",
            "brokerRole=ASYNC_MASTER",
            "brokerIP1=127.0.0.1",
            f"listenPort={self.broker_port}",
            f"namesrvAddr={self.ns_addr}",
            f"storePathRootDir={self.store}",
            f"flushDiskType={flush}",
            "autoCreateTopicEnable=true",
            # Both brokers delete commit-log segments at once past this share
            # of the disk (75% by default); a shared machine's disk may
            # already be past that, which would cut the backlog mid-run.
            "diskMaxUsedSpaceRatio=90",
            f"haListenPort={self.broker_port + 1}",
        ]
        if self.kind.startswith("rocketmq-rust"):
            # It requires maxUsed < cleanForcibly < warningLevel; at the
            # warning level it refuses sends, as Meridian does at 95%.
            lines += ["diskSpaceCleanForciblyRatio=93", "diskSpaceWarningLevelRatio=95"]
        if self.kind == "rocketmq-rust-nomb":
            lines.append("commitLogMicroBatchEnabled=false")
        return "\n".join(lines) + "\n"

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start(self):
        conf = self.write("broker.conf", self.broker_conf())
        if self.kind.startswith("meridian"):
            ns_conf = self.write("namesrv.conf", f"listenPort={self.ns_port}\n")
            ns = start([MERIDIAN, "namesrv", "-c", ns_conf], self.dir, "namesrv.log")
            self.procs.append(ns)
            wait_port(self.ns_port, ns)
            self.broker = start([MERIDIAN, "broker", "-c", conf], self.dir, "broker.log")
        else:
            home = os.path.join(self.dir, "home")
            os.makedirs(home)
            env = dict(os.environ, HOME=home, ROCKETMQ_HOME=home)
            ns_conf = self.write("namesrv.toml", "\n".join([
                f'rocketmqHome = "{home}"',
                f'kvConfigPath = "{home}/kvConfig.json"',
                f'configStorePath = "{home}/namesrv.properties"',
                f"listenPort = {self.ns_port}",
                'bindAddress = "127.0.0.1"',
            ]) + "\n")
            ns = start([PEER_NAMESRV, "-c", ns_conf], self.dir, "namesrv.log", env)
            self.procs.append(ns)
            wait_port(self.ns_port, ns)
            self.broker = start([PEER_BROKER, "-c", conf], self.dir, "broker.log", env)
        self.procs.append(self.broker)
        try:
            wait_registered(self.ns_addr, self.broker_addr, self.broker)
        except RuntimeError as e:
            with open(os.path.join(self.dir, "broker.log"), errors="replace") as f:
                tail = f.read()[-1500:]
            raise RuntimeError(f"{e}; the broker's log ends with:\n{tail}") from None

    def stop(self):
        for p in reversed(self.procs):
            stop(p)
        self.procs = []
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- bench runs

def bench(system, args, timeout):
    """`meridian bench <args> --json` against `system`: its report, plus the
    CPU the broker and the client used (in cores, over the whole run)."""
    cmd = [MERIDIAN, "bench", *args[:1], "-n", system.ns_addr, *args[1:], "--json"]
    out_path = os.path.join(system.dir, "bench.out")
    err_path = os.path.join(system.dir, "bench.err")
    broker_cpu0 = cpu_seconds(system.broker.pid)
    t0 = time.time()
    with open(out_path, "wb") as out, open(err_path, "ab") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        CHILDREN.append(p)
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
        CHILDREN.remove(p)
    wall = time.time() - t0
    broker_cpu = cpu_seconds(system.broker.pid) - broker_cpu0
    with open(out_path) as f:
        text = f.read().strip()
    if p.returncode != 0 or not text:
        with open(err_path) as f:
            tail = f.read()[-2000:]
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({p.returncode}):\n{tail}")
    report = json.loads(text)
    report["cpu_broker_cores"] = broker_cpu / wall
    report["cpu_client_cores"] = (usage.ru_utime + usage.ru_stime) / wall
    report["command_line"] = " ".join(["meridian", "bench", args[0], "-n", "<namesrv>", *args[1:], "--json"])
    return report


def produce_args(threads, duration, warmup, extra=()):
    return ["produce", "-t", TOPIC, "--queues", str(QUEUES), "-w", str(threads), "-s", "1024",
            "--duration", str(duration), "--warmup", str(warmup), *extra]


def run_system(kind, workdir, opts, results, rss):
    system = System(kind, workdir)
    log(f"{kind}: starting (store {system.store})")
    try:
        system.start()
        d, w = opts.duration, opts.warmup
        timeout = d + w + 120

        def case(name, args, t=timeout):
            r = bench(system, args, t)
            results.setdefault(kind, {}).setdefault(name, []).append(r)
            lat = r["latency_ms"]
            log(f"{kind}: {name}: {r['msgs_per_sec']:.0f} msg/s, p50 {lat['p50']:.3f} ms, "
                f"p99 {lat['p99']:.3f} ms, errors {r['errors']}, "
                f"cpu broker {r['cpu_broker_cores']:.2f} client {r['cpu_client_cores']:.2f}")
            return r

        if kind == "meridian-sync":
            case("sync-64", produce_args(64, d, w))
            return
        # One request in flight leaves the tool nothing to run in parallel;
        # a single-threaded tool saves a thread hand-off per round trip.
        case("sync-1", produce_args(1, d, w, ["--client-threads", "1"]))
        case("sync-8", produce_args(8, d, w))
        peak = case("sync-64", produce_args(64, d, w))
        rate = max(1, round(peak["msgs_per_sec"] / 2))
        case("rate-half-peak", produce_args(64, d, w, ["--rate", str(rate)]))
        case("batch-32", produce_args(8, d, w, ["--mode", "batch", "--batch", "32"]))
        rss.setdefault(kind, {}).setdefault("after_produce", []).append(proc_status(system.broker.pid))
        if kind == "rocketmq-rust-nomb":
            return
        fill = case("backlog-fill", ["produce", "-t", BACKLOG_TOPIC, "--queues", str(QUEUES),
                                     "-w", "8", "-s", "1024", "--mode", "batch", "--batch", "32",
                                     "-q", str(opts.backlog), "--duration", "0", "--warmup", "0"],
                    t=max(600, timeout))
        if fill["errors"]:
            log(f"{kind}: backlog fill had {fill['errors']} errors")
        got = case("consume-backlog", ["consume", "-t", BACKLOG_TOPIC, "--from-start",
                                       "--duration", "0", "--warmup", "0"], t=max(600, timeout))
        if got["received"] != opts.backlog:
            log(f"{kind}: consumed {got['received']} of a {opts.backlog}-message backlog "
                f"(the broker reported {got['settings'].get('backlog')})")
        rss.setdefault(kind, {}).setdefault("end", []).append(proc_status(system.broker.pid))
    finally:
        system.stop()


# ---------------------------------------------------------------- builds

def build_meridian():
    log("building Meridian (release)")
    subprocess.run(["nice", "-n", "10", "cargo", "build", "--release", "--bin", "meridian"],
                   cwd=REPO, check=True)


def build_peer():
    """Returns None when the peer is ready, else why it is not."""
    if os.path.exists(PEER_NAMESRV) and os.path.exists(PEER_BROKER):
        return None
    if not shutil.which("cargo"):
        return "cargo is not on PATH"
    log(f"building rocketmq-rust {PEER_VERSION} into {PEER_ROOT} (once; this takes long)")
    os.makedirs(CACHE, exist_ok=True)
    env = dict(os.environ, CARGO_TARGET_DIR=PEER_TARGET)
    logpath = os.path.join(CACHE, "install.log")
    with open(logpath, "wb") as out:
        r = subprocess.run(PEER_INSTALL, env=env, stdout=out, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        with open(logpath, errors="replace") as f:
            tail = f.read()[-3000:]
        return f"`cargo install` failed with {r.returncode}; the end of {logpath}:\n\n{tail}"
    return None


# ---------------------------------------------------------------- report

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return ""


def machine(workdir):
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    dev = sh(f"findmnt -n -o SOURCE,FSTYPE -T {workdir}")
    name = os.path.basename(dev.split()[0]) if dev else ""
    rota = sh(f"cat /sys/block/{name}/queue/rotational 2>/dev/null")
    disk = f"{dev} ({'rotational' if rota == '1' else 'non-rotational' if rota == '0' else 'unknown'} "
    disk += "as the kernel reports it)"
    return {
        "nproc": sh("nproc"),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "disk": disk,
        "rustc": sh("rustc --version"),
    }


def med(values):
    return statistics.median(values) if values else None


def metric(results, kind, case, key):
    runs = results.get(kind, {}).get(case, [])
    vals = []
    for r in runs:
        v = r
        for k in key.split("."):
            v = v[k]
        vals.append(v)
    return med(vals), vals


def fmt_num(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


CASES = [
    ("sync-1", "1 KiB sync send, 1 producer"),
    ("sync-8", "1 KiB sync send, 8 producers"),
    ("sync-64", "1 KiB sync send, 64 producers"),
    ("batch-32", "batches of 32 × 1 KiB, 8 producers"),
    ("consume-backlog", "consume a backlog (from offset 0)"),
]


def render(results, rss, opts, mach, peer_error, started, elapsed, rev, loads):
    M, P, N = "meridian", "rocketmq-rust", "rocketmq-rust-nomb"
    have_peer = P in results
    out = []
    add = out.append
    add(f"Generated by `bench/compare.py --rounds {opts.rounds} --duration {opts.duration:g} "
        f"--warmup {opts.warmup:g} --backlog {opts.backlog}` on {started:%Y-%m-%d %H:%M} UTC "
        f"in {elapsed / 60:.1f} min. Meridian at `{rev}`; rocketmq-rust {PEER_VERSION} from crates.io.")
    add("")
    add("**Machine.** " + "; ".join([
        f"{mach['nproc']} CPUs ({mach['cpu']})", f"{mach['memory']} RAM",
        f"kernel {mach['kernel']}", f"disk {mach['disk']}", mach["rustc"],
        "client and brokers on the same machine",
        "1-minute load average {:.2f} before the run and {:.2f} after it "
        "(the machine may be shared)".format(*loads)]) + ".")
    add("")
    if peer_error:
        add("**rocketmq-rust was not measured:** " + peer_error)
        add("")
    add(f"Medians of {opts.rounds} rounds; each round starts every system on a fresh store, in turn "
        f"(Meridian, rocketmq-rust, rocketmq-rust with micro-batching off, Meridian SYNC_FLUSH). "
        f"Each case runs {opts.warmup:g} s of warm-up, then {opts.duration:g} s measured.")
    add("")
    # Throughput.
    head = "| case | Meridian msg/s |"
    sep = "|---|---:|"
    if have_peer:
        head += " rocketmq-rust msg/s | Meridian / rocketmq-rust |"
        sep += "---:|---:|"
        if N in results:
            head += " rocketmq-rust, micro-batch off | Meridian / that |"
            sep += "---:|---:|"
    add(head)
    add(sep)
    for case, label in CASES:
        m, _ = metric(results, M, case, "msgs_per_sec")
        row = f"| {label} | {fmt_num(m)} |"
        if have_peer:
            p, _ = metric(results, P, case, "msgs_per_sec")
            row += f" {fmt_num(p)} | {ratio(m, p)} |"
            if N in results:
                n, _ = metric(results, N, case, "msgs_per_sec")
                row += f" {fmt_num(n)} | {ratio(m, n)} |"
        add(row)
    ms, _ = metric(results, "meridian-sync", "sync-64", "msgs_per_sec")
    ma, _ = metric(results, M, "sync-64", "msgs_per_sec")
    add("")
    add(f"SYNC_FLUSH against ASYNC_FLUSH on Meridian, 64 producers: {fmt_num(ms)} against "
        f"{fmt_num(ma)} msg/s = **{ratio(ms, ma)}** (target ≥ 0.60×).")
    add("")
    # Latency.
    add("Send latency (ms, from the send, or from its intended time under `--rate`, to the answer):")
    add("")
    add("| case | system | p50 | p90 | p99 | p99.9 | max |")
    add("|---|---|---:|---:|---:|---:|---:|")
    systems = [s for s in (M, P, N, "meridian-sync") if s in results]
    for case in ("sync-1", "sync-8", "sync-64", "rate-half-peak", "batch-32"):
        for s in systems:
            if case not in results[s]:
                continue
            vals = [fmt_num(metric(results, s, case, f"latency_ms.{k}")[0], 3)
                    for k in ("p50", "p90", "p99", "p999", "max")]
            label = case
            if case == "rate-half-peak":
                rate, _ = metric(results, s, case, "settings.rate")
                label = f"rate {fmt_num(rate)} msg/s (half its peak), 64 producers"
            add(f"| {label} | {s} | " + " | ".join(vals) + " |")
    add("")
    # CPU.
    add("CPU used during each case (cores, warm-up included; the machine has "
        f"{mach['nproc']}):")
    add("")
    add("| case | system | broker | client |")
    add("|---|---|---:|---:|")
    for case in ("sync-1", "sync-8", "sync-64", "rate-half-peak", "batch-32", "consume-backlog"):
        for s in systems:
            if case not in results[s]:
                continue
            b, _ = metric(results, s, case, "cpu_broker_cores")
            c, _ = metric(results, s, case, "cpu_client_cores")
            add(f"| {case} | {s} | {fmt_num(b, 2)} | {fmt_num(c, 2)} |")
    add("")
    # RSS.
    add("Broker memory (MiB; VmHWM is the peak resident set, RssAnon/RssFile split the "
        "resident set at that moment into heap and mapped files):")
    add("")
    add("| system | when | VmHWM | RssAnon | RssFile |")
    add("|---|---|---:|---:|---:|")
    for s in systems:
        for when, label in (("after_produce", "after the produce cases"),
                            ("end", f"after writing and consuming the {opts.backlog:,}-message backlog")):
            snaps = rss.get(s, {}).get(when, [])
            if not snaps:
                continue
            vals = [fmt_num(med([x.get(k, 0) / 1024 for x in snaps]), 0)
                    for k in ("VmHWM", "RssAnon", "RssFile")]
            add(f"| {s} | {label} | " + " | ".join(vals) + " |")
    add("")
    # Targets.
    add("Targets (issue 4):")
    add("")
    peer_best = {}
    for case in ("sync-1", "sync-8", "sync-64"):
        vals = [metric(results, k, case, "msgs_per_sec")[0] for k in (P, N)]
        vals = [v for v in vals if v]
        peer_best[case] = max(vals) if vals else None
    rows = []
    for case in ("sync-1", "sync-8", "sync-64"):
        m, _ = metric(results, M, case, "msgs_per_sec")
        b = peer_best[case]
        ok = m is not None and b is not None and m >= 2 * b
        rows.append((f"produce ≥ 2× rocketmq-rust ({case}, against its faster configuration)",
                     ratio(m, b), "met" if ok else ("not measured" if b is None else "**not met**")))
    rows.append(("SYNC_FLUSH ≥ 60% of ASYNC_FLUSH at 64 producers", ratio(ms, ma),
                 "met" if ms and ma and ms >= 0.6 * ma else "**not met**"))
    p99, _ = metric(results, M, "rate-half-peak", "latency_ms.p99")
    rows.append(("send p99 ≤ 2 ms at half of peak", f"{fmt_num(p99, 3)} ms",
                 "met" if p99 is not None and p99 <= 2.0 else "**not met**"))
    cons, _ = metric(results, M, "consume-backlog", "msgs_per_sec")
    rows.append(("consume of a backlog ≥ produce peak (1 KiB sync, 64 producers)",
                 f"{fmt_num(cons)} against {fmt_num(ma)} msg/s",
                 "met" if cons and ma and cons >= ma else "**not met**"))
    hwm = rss.get(M, {}).get("after_produce", [])
    hwm_m = med([x["VmHWM"] / 1024 for x in hwm]) if hwm else None
    rows.append(("broker RSS ≤ 256 MiB at peak load (VmHWM after the produce cases)",
                 f"{fmt_num(hwm_m)} MiB", "met" if hwm_m is not None and hwm_m <= 256 else "**not met**"))
    add("| target | figure | |")
    add("|---|---|---|")
    for t, fig, st in rows:
        add(f"| {t} | {fig} | {st} |")
    add("")
    # Raw.
    add("<details><summary>Every round</summary>")
    add("")
    add("| system | case | msg/s per round | p99 ms per round | errors |")
    add("|---|---|---|---|---:|")
    for s in systems:
        for case, runs in results[s].items():
            rates = ", ".join(fmt_num(r["msgs_per_sec"]) for r in runs)
            p99s = ", ".join(fmt_num(r["latency_ms"]["p99"], 3) for r in runs)
            errs = sum(r["errors"] for r in runs)
            add(f"| {s} | {case} | {rates} | {p99s} | {errs} |")
    add("")
    add("</details>")
    add("")
    # Commands.
    add("Commands each case ran (`<namesrv>` is the system's name server):")
    add("")
    add("```")
    seen = set()
    for s in systems:
        for case, runs in results[s].items():
            line = runs[0]["command_line"]
            if case == "rate-half-peak":
                line = line.replace(f"--rate {runs[0]['settings']['rate']:g}", "--rate <half of sync-64>")
                line = line.replace(f"--rate {int(runs[0]['settings']['rate'])}", "--rate <half of sync-64>")
            if line not in seen:
                seen.add(line)
                add(f"{case:>16}: {line}")
    add("```")
    return "\n".join(out)


def write_doc(path, section):
    block = f"{BEGIN}\n{section}\n{END}"
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        if BEGIN in text and END in text:
            head = text.split(BEGIN)[0]
            tail = text.split(END, 1)[1]
            text = head + block + tail
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        text = f"# Benchmarks\n\n{block}\n"
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--backlog", type=int, default=1_000_000, help="messages in the consume backlog")
    ap.add_argument("--no-peer", action="store_true", help="measure Meridian only")
    ap.add_argument("--no-build", action="store_true", help="use the existing release binary")
    ap.add_argument("--workdir", default=None, help="parent of the stores (default: the system temp dir)")
    ap.add_argument("--doc", default=os.path.join(REPO, "docs", "benchmarks.md"))
    ap.add_argument("--raw", default=None, help="also write every report as JSON here")
    ap.add_argument("--render", default=None, metavar="RAW",
                    help="run nothing: write the doc from a run saved with --raw")
    opts = ap.parse_args()
    if opts.render:
        with open(opts.render) as f:
            publish(json.load(f), opts.doc)
        return

    signal.signal(signal.SIGINT, stop_all_children)
    signal.signal(signal.SIGTERM, stop_all_children)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.time()
    if not opts.no_build:
        build_meridian()
    peer_error = None
    if opts.no_peer:
        peer_error = "skipped (`--no-peer`)."
    else:
        peer_error = build_peer()
        if peer_error:
            log(f"rocketmq-rust unavailable: {peer_error}")
    rev = sh(f"git -C {REPO} rev-parse --short HEAD") or "unknown"
    if sh(f"git -C {REPO} status --porcelain --untracked-files=no"):
        rev += " with uncommitted changes"

    load_before = os.getloadavg()[0]
    workdir = tempfile.mkdtemp(prefix="meridian-compare-", dir=opts.workdir)
    kinds = ["meridian"]
    if not peer_error:
        kinds += ["rocketmq-rust", "rocketmq-rust-nomb"]
    kinds.append("meridian-sync")
    results, rss = {}, {}
    try:
        for r in range(opts.rounds):
            log(f"round {r + 1} of {opts.rounds}")
            for kind in kinds:
                try:
                    run_system(kind, workdir, opts, results, rss)
                except Exception as e:
                    log(f"{kind}: failed: {e}")
                    if kind.startswith("rocketmq-rust") and not results.get(kind):
                        peer_error = (peer_error or "") + f"\n\n`{kind}` failed in round {r + 1}: {e}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    run = {
        "results": results,
        "rss": rss,
        "options": vars(opts),
        "machine": machine(opts.workdir or tempfile.gettempdir()),
        "peer_error": peer_error,
        "started": started.isoformat(),
        "elapsed": time.time() - t0,
        "rev": rev,
        "loads": [load_before, os.getloadavg()[0]],
    }
    if opts.raw:
        with open(opts.raw, "w") as f:
            json.dump(run, f, indent=1)
    publish(run, opts.doc)


def publish(run, doc):
    """Write the section for a finished run (as saved with `--raw`)."""
    opts = argparse.Namespace(**run["options"])
    section = render(run["results"], run["rss"], opts, run["machine"], run["peer_error"],
                     datetime.datetime.fromisoformat(run["started"]), run["elapsed"],
                     run["rev"], run["loads"])
    write_doc(doc, section)
    print(section)
    log(f"wrote {doc}")


if __name__ == "__main__":
    main()
