//! Invariant 1: under SYNC_FLUSH, a send answered SEND_OK survives `kill -9`
//! of the broker. Several trials, each killing a real broker process in the
//! middle of a load of concurrent sends, then counting every acknowledged
//! message by its key after the restart. Consume queues must agree with the
//! commit log: every queue reads back as a gap-free run of offsets whose
//! records carry that topic, queue and offset.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use meridian_client::producer::Message;
use meridian_client::{Admin, Producer};
use support::cluster::{Cluster, ClusterOpts};

const TOPIC: &str = "crash-test";
const QUEUES: i32 = 4;
const PRODUCERS: usize = 16;
const TRIALS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_flush_keeps_every_acknowledged_message_across_kill9() {
    for trial in 0..TRIALS {
        let mut cluster = Cluster::dev(ClusterOpts::new().sync_flush());
        cluster.create_topic(TOPIC, QUEUES as u32);
        let broker = cluster.broker_addr();
        let producer = Arc::new(Producer::new(&cluster.namesrv_addr(), "crash-producer"));
        let acked = Arc::new(Mutex::new(Vec::<String>::new()));
        let stop = Arc::new(AtomicBool::new(false));

        let mut tasks = Vec::new();
        for w in 0..PRODUCERS {
            let (producer, acked, stop, broker) = (
                producer.clone(),
                acked.clone(),
                stop.clone(),
                broker.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("t{trial}-w{w}-{i}");
                    let msg = Message {
                        topic: TOPIC.into(),
                        body: Bytes::from(format!("body of {key}").repeat(8)),
                        keys: vec![key.clone()],
                        ..Default::default()
                    };
                    // No retry: a retried send could be stored twice, and
                    // this test counts copies.
                    match producer
                        .send_to(&broker, "broker-a", (w as i32) % QUEUES, &msg)
                        .await
                    {
                        Ok(r) if r.status == "SEND_OK" => acked.lock().unwrap().push(key),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                    i += 1;
                }
            }));
        }

        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before_kill = acked.lock().unwrap().len();
        tokio::task::block_in_place(|| cluster.kill9());
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        let acked = acked.lock().unwrap().clone();
        assert!(
            before_kill > 0,
            "trial {trial}: no send was acknowledged before the kill"
        );

        tokio::task::block_in_place(|| cluster.restart_broker());
        let admin = Admin::new(&cluster.namesrv_addr());
        let seen = support::queues::count_keys(&admin, &broker, TOPIC, QUEUES).await;

        let missing: Vec<&String> = acked.iter().filter(|k| !seen.contains_key(*k)).collect();
        let duplicated: Vec<(&String, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
        eprintln!(
            "trial {trial}: {} sends acknowledged, {} messages stored, {} missing, {} duplicated",
            acked.len(),
            seen.len(),
            missing.len(),
            duplicated.len()
        );
        assert!(
            missing.is_empty(),
            "trial {trial}: {} acknowledged messages lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        assert!(
            duplicated.is_empty(),
            "trial {trial}: messages stored twice: {:?}",
            &duplicated[..duplicated.len().min(5)]
        );
    }
}
