//! A broker given several name servers (`namesrvAddr=a;b`) registers with
//! every one, and a topic it creates appears in every one's routes at once
//! (not at the next periodic registration, 30 s later).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meridian_client::Admin;

mod support;
use support::cluster::TEST_DISK_RATIO;
use support::free_port;

const MERIDIAN: &str = env!("CARGO_BIN_EXE_meridian");

/// Kills its processes when dropped, also on panic.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Start `meridian <args>` and wait for a stdout line containing `ready`.
fn start(args: &[&str], ready: &str) -> Child {
    let mut child = Command::new(MERIDIAN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn meridian");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(&ready) {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("process did not become ready");
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_registers_with_every_name_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut procs = Procs(Vec::new());
    let mut ns_addrs = Vec::new();
    for i in 0..2 {
        let port = free_port();
        let conf = dir.path().join(format!("namesrv{i}.conf"));
        std::fs::write(&conf, format!("listenPort={port}\n")).unwrap();
        procs
            .0
            .push(start(&["namesrv", "-c", conf.to_str().unwrap()], "ready"));
        ns_addrs.push(format!("127.0.0.1:{port}"));
    }
    let broker_port = free_port();
    let conf = dir.path().join("broker.conf");
    std::fs::write(
        &conf,
        format!(
            "brokerClusterName=DefaultCluster\nbrokerName=broker-a\nbrokerId=0\nlistenPort={broker_port}\n\
             storePathRootDir={}\nbrokerIP1=127.0.0.1\nhaListenPort=0\nnamesrvAddr={}\n\
             diskMaxUsedSpaceRatio={TEST_DISK_RATIO}\n",
            dir.path().join("store").display(),
            ns_addrs.join(";")
        ),
    )
    .unwrap();
    procs.0.push(start(
        &["broker", "-c", conf.to_str().unwrap()],
        "meridian broker ready",
    ));

    // Create a topic through the first name server's view of the cluster.
    let admin = Admin::new(&ns_addrs[0]);
    let masters = admin.master_addrs("DefaultCluster").await.unwrap();
    assert_eq!(masters.len(), 1);
    let cfg = meridian_protocol::body::TopicConfig {
        topic_name: "everywhere".into(),
        read_queue_nums: 2,
        write_queue_nums: 2,
        perm: 6,
        ..Default::default()
    };
    admin.update_topic(&masters[0].1, &cfg).await.unwrap();

    // Both name servers route it within a few seconds.
    for ns in &ns_addrs {
        let admin = Admin::new(ns);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(route) = admin.route("everywhere").await.unwrap() {
                assert_eq!(route.queue_datas[0].write_queue_nums, 2);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{ns} has no route for the new topic"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
