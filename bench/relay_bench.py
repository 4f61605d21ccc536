#!/usr/bin/env python3
"""The relay between two regions, on this machine: how fast one link copies
a backlog, and how far behind it runs at a fixed rate, with a delay on the
link between the regions; beside it, the produce figure of the source
region alone, measured in the same run.

Two regions, each its own name server and one broker (ASYNC_MASTER,
ASYNC_FLUSH): `A` (regionId=A) and `B` (regionId=B). B's broker listens on
127.0.0.1 and advertises 127.0.0.2 (`bindAddress`, `brokerIP1`), where a
`meridian netproxy --delay-ms 35` listens on the same port: everything that
finds B's broker through B's name server (the relay, appending) crosses the
delayed link; the relay reads A directly, as a relay that sits in the
source region does. One `meridian relay` A -> B.

Cases, per round, each on fresh stores:
  local       `meridian bench produce` into A, batches of 32 x 1 KiB, 8
              tasks: what the source region takes with no relay at all.
  throughput  a backlog of --backlog 1 KiB messages written into A first
              (batches, not measured), then the relay started: messages /
              s from the first copy stored in B to the last (B's
              `relayAppendedTotal`, polled every 100 ms).
  lag         the relay running, A takes --rate msg/s (default: half the
              round's throughput) of 1 KiB batches for --duration s after
              --warmup s; then `meridian bench relay-lag` reads every copy
              in B and reports, for the records sent in the measured
              window, B's store time minus A's (both brokers on this
              machine's clock).

It rewrites the "Between regions: the relay" section of
docs/benchmarks.md with the medians (the rest of the file is kept).

Only the Python standard library is used; process helpers come from
bench/compare.py. Every process this script starts is stopped by its pid,
also on an error or Ctrl-C.

Usage: bench/relay_bench.py [--rounds 3] [--backlog 1000000] [--rate N]
                            [--duration 20] [--warmup 3] [--delay-ms 35]
                            [--relay-conf key=value ...] [--meridian PATH]
                            [--no-build] [--doc PATH] [--raw FILE]
       bench/relay_bench.py --quick        smoke run: 1 round, small backlog
       bench/relay_bench.py --render FILE  rewrite the doc from a saved run
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True

import compare  # noqa: E402
from compare import fmt_num, log, med  # noqa: E402
import ha_compare  # noqa: E402

REPO = compare.REPO
MERIDIAN = compare.MERIDIAN
HEADING = "## Between regions: the relay"
SCRIPT = "bench/relay_bench.py"
QUEUES = 8


class Regions:
    """Regions A and B, B behind a delaying proxy, and the relay."""

    def __init__(self, workdir, delay_ms):
        self.dir = tempfile.mkdtemp(prefix="relay-", dir=workdir)
        self.delay_ms = delay_ms
        self.procs = {}
        self.ns = {}
        self.broker = {}
        self.proxy_control = None

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_region(self, region, behind_proxy):
        ns_port, port, ha = ha_compare.free_ports(3)
        self.ns[region] = f"127.0.0.1:{ns_port}"
        conf = self.write(f"namesrv-{region}.conf", f"listenPort={ns_port}\n")
        p = compare.start([MERIDIAN, "namesrv", "-c", conf], self.dir, f"namesrv-{region}.log")
        self.procs[f"namesrv-{region}"] = p
        compare.wait_port(ns_port, p)
        lines = [
            "brokerClusterName=DefaultCluster",
            f"brokerName=broker-{region.lower()}",
            f"regionId={region}",
            "brokerId=0",
            "brokerRole=ASYNC_MASTER",
            "flushDiskType=ASYNC_FLUSH",
            f"listenPort={port}",
            f"haListenPort={ha}",
            f"namesrvAddr={self.ns[region]}",
            f"storePathRootDir={os.path.join(self.dir, 'store-' + region)}",
            "autoCreateTopicEnable=true",
            "diskMaxUsedSpaceRatio=90",
        ]
        if behind_proxy:
            lines += ["bindAddress=127.0.0.1", "brokerIP1=127.0.0.2"]
        else:
            lines += ["brokerIP1=127.0.0.1"]
        conf = self.write(f"broker-{region}.conf", "\n".join(lines) + "\n")
        p = compare.start([MERIDIAN, "broker", "-c", conf], self.dir, f"broker-{region}.log")
        self.procs[f"broker-{region}"] = p
        self.broker[region] = f"127.0.0.1:{port}"
        compare.wait_port(port, p)
        if behind_proxy:
            p = compare.start([MERIDIAN, "netproxy", "--listen", f"127.0.0.2:{port}",
                               "--target", f"127.0.0.1:{port}", "--delay-ms", str(self.delay_ms),
                               "--control", "127.0.0.1:0"], self.dir, "netproxy.log")
            self.procs["netproxy"] = p
            deadline = time.time() + 30
            while time.time() < deadline and "listening" not in self.tail("netproxy.log"):
                time.sleep(0.05)
        advertised = f"127.0.0.{2 if behind_proxy else 1}:{port}"
        compare.wait_registered(self.ns[region], advertised, self.procs[f"broker-{region}"])

    def start(self):
        self.start_region("A", False)
        self.start_region("B", True)

    def create_topic(self, topic):
        for region in ("A", "B"):
            rc, _, err = ha_compare.admin(self.ns[region], "updateTopic", "-t", topic, "-c",
                                          "DefaultCluster", "-r", str(QUEUES), "-w", str(QUEUES))
            if rc != 0:
                raise RuntimeError(f"updateTopic {topic} in {region}: {err}")

    def start_relay(self, topic, extra):
        name = f"relay-{topic}"
        conf = self.write(f"{name}.conf", "\n".join([
            f"srcClusterAddr={self.ns['A']}",
            f"destClusterAddr={self.ns['B']}",
            f"replicationGroup={name}",
            f"topics={topic}",
            "routeRefreshIntervalMs=1000",
            *extra,
        ]) + "\n")
        p = compare.start([MERIDIAN, "relay", "-c", conf], self.dir, f"{name}.log")
        self.procs[name] = p
        return p

    def stop_relay(self, topic):
        p = self.procs.pop(f"relay-{topic}", None)
        if p:
            compare.stop(p)

    def appended(self):
        """B's relayAppendedTotal."""
        rc, out, _ = ha_compare.admin(self.ns["B"], "--json", "brokerStatus", "-b",
                                      self.broker["B"], timeout=10)
        if rc != 0:
            return None
        try:
            return int(json.loads(out)[self.broker["B"]]["relayAppendedTotal"])
        except (ValueError, KeyError):
            return None

    def tail(self, logname, n=3000):
        try:
            with open(os.path.join(self.dir, logname), errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def stop(self, keep=False):
        for p in reversed(list(self.procs.values())):
            compare.stop(p)
        self.procs.clear()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def bench(args, timeout):
    r = subprocess.run([MERIDIAN, "bench", *args, "--json"], capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0 or not r.stdout.strip():
        raise RuntimeError(f"`meridian bench {' '.join(args)}` failed ({r.returncode}):\n"
                           f"{r.stderr[-2000:]}")
    return json.loads(r.stdout)


def batch_args(topic, extra=()):
    return ["-t", topic, "--queues", str(QUEUES), "-w", "8", "-s", "1024",
            "--mode", "batch", "--batch", "32", *extra]


def run_round(opts, rnd):
    regs = Regions(opts.workdir, opts.delay_ms)
    out = {}
    try:
        regs.start()
        # local: the source region alone.
        regs.create_topic("RelayLocal")
        rep = bench(["produce", "-n", regs.ns["A"], *batch_args("RelayLocal", [
            "--duration", f"{opts.duration:g}", "--warmup", f"{opts.warmup:g}"])],
            timeout=opts.duration + opts.warmup + 120)
        out["local"] = rep
        log(f"round {rnd}: local produce {fmt_num(rep['msgs_per_sec'])} msg/s")

        # throughput: a backlog, then the relay.
        regs.create_topic("RelayBacklog")
        bench(["produce", "-n", regs.ns["A"], *batch_args("RelayBacklog", [
            "-q", str(opts.backlog), "--duration", "0", "--warmup", "0"])], timeout=1800)
        base = regs.appended() or 0
        regs.start_relay("RelayBacklog", opts.relay_conf)
        first = last = None
        n0 = None
        deadline = time.time() + 1800
        while time.time() < deadline:
            n = (regs.appended() or 0) - base
            now = time.time()
            if n > 0 and first is None:
                first, n0 = now, n
            if n >= opts.backlog:
                last = now
                break
            time.sleep(0.1)
        if last is None:
            raise RuntimeError(f"the relay copied {n} of {opts.backlog} in 30 min; its log:\n"
                               f"{regs.tail('relay-RelayBacklog.log')}")
        regs.stop_relay("RelayBacklog")
        tput = (opts.backlog - n0) / (last - first) if last > first else 0.0
        out["throughput"] = {"msgs_per_sec": tput, "messages": opts.backlog,
                             "seconds": last - first}
        log(f"round {rnd}: relay throughput {fmt_num(tput)} msg/s "
            f"({opts.backlog} in {last - first:.1f} s)")

        # lag at a fixed rate.
        rate = opts.rate or max(1000, int(tput / 2))
        regs.create_topic("RelayLag")
        base = regs.appended() or 0
        regs.start_relay("RelayLag", opts.relay_conf)
        time.sleep(2)  # the relay's streams are up
        since = int(time.time() * 1000 + opts.warmup * 1000)
        rep = bench(["produce", "-n", regs.ns["A"], *batch_args("RelayLag", [
            "--rate", str(rate), "--duration", f"{opts.duration:g}",
            "--warmup", f"{opts.warmup:g}"])], timeout=opts.duration + opts.warmup + 120)
        until = int(time.time() * 1000)
        sent_total = None
        # Wait for the relay to copy everything (B's count stops growing).
        prev, still = -1, 0
        while still < 10:
            n = regs.appended() or 0
            still = still + 1 if n == prev else 0
            prev = n
            time.sleep(0.2)
        lag = bench(["relay-lag", "-n", regs.ns["B"], "-b", regs.broker["B"], "-t", "RelayLag",
                     "--since-ms", str(since), "--until-ms", str(until)], timeout=600)
        regs.stop_relay("RelayLag")
        out["lag"] = {"rate": rate, "produce": rep, "lag": lag,
                      "copied": prev - base, "sent_total": sent_total}
        log(f"round {rnd}: at {fmt_num(rate)} msg/s lag p50 {lag['latency_ms']['p50']} ms, "
            f"p99 {lag['latency_ms']['p99']} ms over {lag['received']} records")
        return out
    finally:
        regs.stop(keep=opts.keep)


def render(run):
    opts = run["opts"]
    rounds = run["rounds"]
    local = [r["local"]["msgs_per_sec"] for r in rounds]
    tput = [r["throughput"]["msgs_per_sec"] for r in rounds]
    rates = [r["lag"]["rate"] for r in rounds]
    sent = [r["lag"]["produce"]["msgs_per_sec"] for r in rounds]
    p50 = [r["lag"]["lag"]["latency_ms"]["p50"] for r in rounds]
    p99 = [r["lag"]["lag"]["latency_ms"]["p99"] for r in rounds]
    mx = [r["lag"]["lag"]["latency_ms"]["max"] for r in rounds]
    n = len(rounds)
    d = opts["delay_ms"]
    lines = [
        HEADING, "",
        f"Measured with `{run['command_line']}` on {run['started']} "
        f"(commit {run['rev']}; {run['machine']['nproc']} × {run['machine']['cpu']}, "
        f"{run['machine']['memory']}). Two regions on one machine, "
        f"{d} ms added each way between them by `meridian netproxy`; one relay A → B, "
        f"1 KiB messages, {QUEUES} queues. Medians of {n} round(s); every round on fresh stores.",
        "",
        "| | median | per round |",
        "|---|---|---|",
        f"| A alone: produce, batches of 32, 8 tasks (msg/s) | {fmt_num(med(local))} | "
        f"{', '.join(fmt_num(x) for x in local)} |",
        f"| relay throughput, a {opts['backlog']:,}-message backlog (msg/s) | "
        f"{fmt_num(med(tput))} | {', '.join(fmt_num(x) for x in tput)} |",
        f"| lag at a fixed rate: rate sent (msg/s) | {fmt_num(med(sent))} | "
        f"{', '.join(fmt_num(x) for x in sent)} (asked {', '.join(fmt_num(x) for x in rates)}) |",
        f"| lag p50, A's store to B's store (ms) | {med(p50):.1f} | "
        f"{', '.join(f'{x:.1f}' for x in p50)} |",
        f"| lag p99 (ms) | {med(p99):.1f} | {', '.join(f'{x:.1f}' for x in p99)} |",
        f"| lag max (ms) | {med(mx):.1f} | {', '.join(f'{x:.1f}' for x in mx)} |",
        "",
        f"Targets: relay throughput ≥ 100,000 msg/s on one link; lag p99 ≤ {d} + 100 = "
        f"{d + 100} ms at half of the throughput. "
        f"Throughput: **{'met' if med(tput) >= 100_000 else 'not met'}**; "
        f"lag: **{'met' if med(p99) <= d + 100 else 'not met'}**.",
        "",
        "What bounds it: one origin queue has at most `relayPipelineDepth` appends of "
        "`relayPullBatchSize` records on the way (8 × 256 by default), so a queue moves at most "
        f"8 × 256 records per round trip ({2 * d} ms here: about "
        f"{fmt_num(8 * 256 / (2 * d / 1000))} msg/s per queue); with {QUEUES} queues the link "
        "could carry more than this machine's two cores give it, shared by both brokers, the "
        "proxy and the relay. The lag is the one-way delay plus the time a record waits for "
        "the append ahead of it when a queue's pipeline is full; `relayPipelineDepth` trades "
        "one for the other (16 carried about a third more in a trial run, with a p99 just over "
        "the target at half of that rate).",
        "",
        "`meridian bench relay-lag -n <target name server> -t <topic> [--since-ms T] "
        "[--until-ms T] [-b broker]` reads the copies a region holds and reports their lag from "
        "the origin's store time (`MERIDIAN_ORIGIN_TS`) to their own; it works on any "
        "deployment whose brokers' clocks agree.",
        "",
        f"The script rewrites this whole section on every run (edit `{SCRIPT}`, not the section).",
        "",
    ]
    return "\n".join(lines) + "\n"


def publish(run, doc):
    section = render(run)
    ha_compare.HEADING = HEADING
    ha_compare.write_doc(doc, section)
    print(section)
    log(f"wrote {doc}")


def main():
    global MERIDIAN
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backlog", type=int, default=1_000_000)
    ap.add_argument("--rate", type=int, default=0)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--delay-ms", type=int, default=35)
    ap.add_argument("--relay-conf", action="append", default=[],
                    help="extra relay.conf line (key=value), repeatable")
    ap.add_argument("--meridian", default=compare.MERIDIAN)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--doc", default=os.path.join(REPO, "docs", "benchmarks.md"))
    ap.add_argument("--raw")
    ap.add_argument("--render")
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true", help="keep each round's directory")
    ap.add_argument("--quick", action="store_true")
    opts = ap.parse_args()
    if opts.render:
        with open(opts.render) as f:
            publish(json.load(f), opts.doc)
        return
    if opts.quick:
        opts.rounds, opts.duration, opts.warmup = 1, 5, 1
        opts.backlog = min(opts.backlog, 300_000)
    if not opts.no_build:
        ha_compare.build()
    MERIDIAN = compare.MERIDIAN = ha_compare.MERIDIAN = os.path.abspath(opts.meridian)
    signal.signal(signal.SIGINT, compare.stop_all_children)
    signal.signal(signal.SIGTERM, compare.stop_all_children)
    started = datetime.datetime.now()
    rounds = []
    for rnd in range(1, opts.rounds + 1):
        rounds.append(run_round(opts, rnd))
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                         capture_output=True, text=True).stdout.strip()
    cmd = [SCRIPT] + sys.argv[1:]
    run = {
        "opts": vars(opts),
        "rounds": rounds,
        "started": f"{started:%Y-%m-%d}",
        "rev": rev,
        "machine": compare.machine(opts.workdir or tempfile.gettempdir()),
        "command_line": " ".join(cmd),
    }
    if opts.raw:
        with open(opts.raw, "w") as f:
            json.dump(run, f, indent=1)
    if not opts.quick:
        publish(run, opts.doc)
    else:
        print(render(run))


if __name__ == "__main__":
    main()
