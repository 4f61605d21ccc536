//! `meridian bench` against a real `meridian dev`: a short produce run, then
//! a consume of the backlog it left. Asserts only that messages flowed and
//! were counted; speed is for `bench/compare.sh`, not for tests.

mod support;

use std::process::Command;

use serde_json::Value;
use support::cluster::{Cluster, ClusterOpts};

const MERIDIAN: &str = env!("CARGO_BIN_EXE_meridian");

/// `meridian bench <args> --json`; the JSON object it printed.
fn bench(args: &[&str]) -> Value {
    let out = Command::new(MERIDIAN)
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .expect("run meridian bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "`meridian bench {}` failed with {}\nstdout:\n{stdout}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("`bench {args:?}` printed no single JSON object ({e}):\n{stdout}")
    })
}

#[test]
fn produce_then_consume_the_backlog() {
    let cluster = Cluster::dev(ClusterOpts::new());
    let namesrv = cluster.namesrv_addr();

    let produced = bench(&[
        "produce",
        "-n",
        &namesrv,
        "-t",
        "BenchSmoke",
        "-w",
        "4",
        "--queues",
        "4",
        "--duration",
        "2",
        "--warmup",
        "0",
    ]);
    let sent = produced["sent"].as_u64().expect("`sent` is a count");
    assert!(sent > 0, "nothing was sent: {produced}");
    assert_eq!(produced["errors"], 0, "{produced}");
    assert!(
        produced["msgs_per_sec"].as_f64().unwrap() > 0.0,
        "{produced}"
    );
    assert!(
        produced["latency_ms"]["p99"].as_f64().unwrap() > 0.0,
        "{produced}"
    );

    let consumed = bench(&[
        "consume",
        "-n",
        &namesrv,
        "-t",
        "BenchSmoke",
        "--from-start",
        "--duration",
        "2",
        "--warmup",
        "0",
    ]);
    let received = consumed["received"]
        .as_u64()
        .expect("`received` is a count");
    assert!(received > 0, "nothing was received: {consumed}");
    assert_eq!(consumed["errors"], 0, "{consumed}");
}
