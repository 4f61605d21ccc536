#!/usr/bin/env python3
"""What the Prometheus endpoint costs the send path: `meridian dev` with
metricsExporterType=PROM (and a scraper reading /metrics every second, as
Prometheus would) against the same without it, side by side in one run.

Each round starts both deployments in turn, each on a fresh store in a
fresh temporary directory with its own ports, drives it with `meridian
bench produce` (1 KiB bodies, 8 queues) in two cases, stops it, and at the
end writes the medians over rounds into the "Metrics: cost of the
Prometheus endpoint" section of docs/benchmarks.md (the section is
replaced, the rest of the file is kept).

Cases:
  sync   --threads tasks (64) sending one message at a time each
  async  --async-threads tasks (16) with up to 64 sends in flight each

Only the Python standard library is used. Every process this script starts
is stopped by its pid, also on an error or Ctrl-C.

Usage: bench/metrics_overhead.py [--rounds 5] [--duration 10] [--warmup 2]
                                 [--threads 64] [--meridian PATH] [--no-build]
                                 [--doc PATH]
"""

import argparse
import datetime
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = "<!-- metrics-overhead:begin -->"
END = "<!-- metrics-overhead:end -->"
CHILDREN = []


def log(msg):
    print(f"[{datetime.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in CHILDREN:
        CHILDREN.remove(p)


def stop_all(*_):
    for p in list(CHILDREN):
        stop(p)
    sys.exit(130)


def wait_port(port, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"meridian exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


class Scraper(threading.Thread):
    """GET /metrics every second until stopped; counts the scrapes."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.done = threading.Event()
        self.scrapes = 0
        self.bytes = 0

    def run(self):
        while not self.done.wait(1.0):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    self.bytes = len(r.read())
                    self.scrapes += 1
            except OSError:
                pass


def run_case(meridian, workdir, metrics, case, opts):
    ns, broker = free_port(), free_port()
    conf = os.path.join(workdir, "broker.conf")
    mport = free_port()
    with open(conf, "w") as f:
        f.write("flushDiskType=ASYNC_FLUSH\n")
        if metrics:
            f.write(f"metricsExporterType=PROM\nmetricsPromExporterHost=127.0.0.1\n"
                    f"metricsPromExporterPort={mport}\n")
    out = open(os.path.join(workdir, "dev.log"), "ab")
    p = subprocess.Popen([meridian, "dev", "--data-dir", os.path.join(workdir, "data"),
                          "--namesrv-port", str(ns), "--broker-port", str(broker), "-c", conf],
                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    CHILDREN.append(p)
    scraper = None
    try:
        wait_port(broker, p)
        if metrics:
            wait_port(mport, p)
            scraper = Scraper(mport)
            scraper.start()
        args = [meridian, "bench", "produce", "-n", f"127.0.0.1:{ns}", "-t", "BenchMetrics",
                "--queues", "8", "-s", "1024", "--duration", str(opts.duration),
                "--warmup", str(opts.warmup), "--json"]
        if case == "sync":
            args += ["-w", str(opts.threads)]
        else:
            args += ["-w", "16", "--mode", "async", "--inflight", "64"]
        r = subprocess.run(args, capture_output=True, text=True, timeout=opts.duration * 4 + 120)
        if r.returncode != 0:
            raise RuntimeError(f"bench failed: {r.stderr[-2000:]}")
        report = json.loads(r.stdout)
        if scraper:
            report["scrapes"] = scraper.scrapes
            report["scrape_bytes"] = scraper.bytes
        return report
    finally:
        if scraper:
            scraper.done.set()
        stop(p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=64)
    ap.add_argument("--meridian", default=os.path.join(ROOT, "target", "release", "meridian"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    opts = ap.parse_args()
    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    if not opts.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "meridian"], cwd=ROOT, check=True)
    started = time.time()
    results = {}
    for rnd in range(opts.rounds):
        for case in ("sync", "async"):
            # Alternate which goes first, so a drift of the machine's load
            # does not favour one side.
            order = (False, True) if (rnd + (case == "async")) % 2 == 0 else (True, False)
            for metrics in order:
                with tempfile.TemporaryDirectory(prefix="meridian-metrics-bench-") as d:
                    r = run_case(opts.meridian, d, metrics, case, opts)
                key = (case, metrics)
                results.setdefault(key, []).append(r)
                log(f"round {rnd + 1} {case} metrics={'on' if metrics else 'off'}: "
                    f"{r['msgs_per_sec']:.0f} msg/s p50 {r['latency_ms']['p50']:.3f} "
                    f"p99 {r['latency_ms']['p99']:.3f} ms")
    rows = []
    for case in ("sync", "async"):
        off, on = results[(case, False)], results[(case, True)]
        med = lambda rs, f: statistics.median(f(r) for r in rs)
        tps_off, tps_on = med(off, lambda r: r["msgs_per_sec"]), med(on, lambda r: r["msgs_per_sec"])
        rows.append(
            f"| {case} | {tps_off:,.0f} | {tps_on:,.0f} | {tps_on / tps_off:.3f} | "
            f"{med(off, lambda r: r['latency_ms']['p50']):.3f} / {med(on, lambda r: r['latency_ms']['p50']):.3f} | "
            f"{med(off, lambda r: r['latency_ms']['p99']):.3f} / {med(on, lambda r: r['latency_ms']['p99']):.3f} | "
            f"{med(on, lambda r: r.get('scrapes', 0)):.0f} |")
    cmd = (f"python3 bench/metrics_overhead.py --rounds {opts.rounds} --duration {opts.duration} "
           f"--warmup {opts.warmup} --threads {opts.threads}")
    section = "\n".join([
        "## Metrics: cost of the Prometheus endpoint",
        "",
        f"Run {datetime.date.today()}, {os.cpu_count()} cores, {opts.rounds} rounds of "
        f"{opts.duration} s (+{opts.warmup} s warm-up) per case and side, sides alternating "
        f"first; medians over rounds. `meridian dev` (release), ASYNC_FLUSH, 1 KiB bodies, 8 queues, "
        f"client on the same machine. *on*: `metricsExporterType=PROM` and a scraper reading "
        f"`/metrics` every second during the run.",
        "",
        "| case | msg/s off | msg/s on | on / off | p50 ms off / on | p99 ms off / on | scrapes |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "sync: 64 tasks, one send each at a time; async: 16 tasks with up to 64 sends in flight each.",
        "Per-round msg/s, lowest to highest (the machine's noise against the difference): " + "; ".join(
            f"{case} off {min(r['msgs_per_sec'] for r in results[(case, False)]):,.0f}–"
            f"{max(r['msgs_per_sec'] for r in results[(case, False)]):,.0f}, on "
            f"{min(r['msgs_per_sec'] for r in results[(case, True)]):,.0f}–"
            f"{max(r['msgs_per_sec'] for r in results[(case, True)]):,.0f}"
            for case in ("sync", "async")) + ".",
        f"Reproduce: `{cmd}` (writes this section; {time.time() - started:.0f} s here).",
    ])
    block = f"{BEGIN}\n{section}\n{END}"
    text = open(opts.doc).read() if os.path.exists(opts.doc) else "# Benchmarks\n"
    if BEGIN in text and END in text:
        text = text.split(BEGIN)[0] + block + text.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(opts.doc, "w") as f:
        f.write(text)
    print(section)


if __name__ == "__main__":
    main()
