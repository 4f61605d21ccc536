//! Master and slave over real TCP on 127.0.0.1: the slave catches up and
//! follows, SYNC_MASTER waits see its acks, restarts resume, small frames
//! split records without harm, and bad bytes on either side close only
//! that connection.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use meridian_ha::{HaConfig, HaRole, HaService, SlaveAck};
use meridian_store::MessageStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn slave_of(store: &Arc<MessageStore>, master: &HaService) -> Arc<HaService> {
    let slave = HaService::start_slave(Arc::clone(store), ha_config());
    slave.set_master_ha_addr(Some(master.local_addr().unwrap().to_string()));
    slave
}

/// Read until the peer closes; panics if it stays open past `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection stayed open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slave_catches_up_then_follows() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (master_store, slave_store) = (open(a.path()), open(b.path()));
    put_range(&master_store, 0, 300).await;
    assert!(master_store.max_commit_log_offset() > 3 * 64 * 1024);
    let master = HaService::start_master(Arc::clone(&master_store), ha_config())
        .await
        .unwrap();
    let slave = slave_of(&slave_store, &master);
    caught_up(&master_store, &slave_store).await;
    assert_same(&master_store, &slave_store, 300);

    // New appends reach it without anyone asking.
    put_range(&master_store, 300, 360).await;
    caught_up(&master_store, &slave_store).await;
    assert_same(&master_store, &slave_store, 360);

    let max = master_store.max_commit_log_offset();
    eventually(LONG, "the slave's ack", || {
        master.slave_acked_offset() == max
    })
    .await;
    let m = master.status();
    assert_eq!(m.role, HaRole::Master);
    assert_eq!(m.slaves.len(), 1);
    assert_eq!((m.slaves[0].acked_offset, m.slaves[0].lag_bytes), (max, 0));
    assert_eq!(m.slaves[0].start_offset, 0);
    assert_eq!(master.connected_slaves(), 1);
    let s = slave.status();
    assert_eq!(s.role, HaRole::Slave);
    assert!(s.connected);
    assert_eq!(s.master_offset_seen, max);
    assert_eq!(s.max_offset, max);
    assert_eq!(
        s.master_addr,
        Some(master.local_addr().unwrap().to_string())
    );
    assert_eq!(slave.slave_acked_offset(), max);

    // None disconnects.
    slave.set_master_ha_addr(None);
    eventually(LONG, "the slave to leave", || {
        master.connected_slaves() == 0 && !slave.status().connected
    })
    .await;
    slave.shutdown();
    master.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_master_waits_for_the_slave() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (master_store, slave_store) = (open(a.path()), open(b.path()));
    let master = HaService::start_master(Arc::clone(&master_store), ha_config())
        .await
        .unwrap();
    let r = put_range(&master_store, 0, 1).await;
    let end = |r: &[meridian_store::PutResult]| {
        let last = r.last().unwrap();
        last.commit_log_offset + last.wrote_bytes as i64
    };
    assert_eq!(
        master.wait_for_slave(end(&r), Duration::from_secs(1)).await,
        SlaveAck::NoSlave
    );

    let slave = slave_of(&slave_store, &master);
    eventually(LONG, "a slave", || master.connected_slaves() == 1).await;
    for i in 1..20 {
        let r = put_range(&master_store, i, i + 1).await;
        assert_eq!(
            master
                .wait_for_slave(end(&r), Duration::from_secs(10))
                .await,
            SlaveAck::Acked
        );
        assert!(slave_store.max_commit_log_offset() >= end(&r));
    }

    // The slave stops: its connection closes, and nobody is waited for.
    slave.shutdown();
    eventually(LONG, "the master to notice", || {
        master.connected_slaves() == 0
    })
    .await;
    let r = put_range(&master_store, 20, 21).await;
    assert_eq!(
        master.wait_for_slave(end(&r), Duration::from_secs(1)).await,
        SlaveAck::NoSlave
    );

    // A slave that is connected but frozen (a stopped process keeps its
    // socket): the wait times out.
    let mut frozen = TcpStream::connect(master.local_addr().unwrap())
        .await
        .unwrap();
    let at = master_store.max_commit_log_offset();
    frozen.write_all(&at.to_be_bytes()).await.unwrap();
    eventually(LONG, "the frozen slave", || master.connected_slaves() == 1).await;
    let r = put_range(&master_store, 21, 22).await;
    assert_eq!(
        master
            .wait_for_slave(end(&r), Duration::from_millis(300))
            .await,
        SlaveAck::Timeout
    );
    // Housekeeping closes it once it has been silent long enough.
    closed_within(&mut frozen, Duration::from_secs(10)).await;
    eventually(LONG, "the frozen slave to go", || {
        master.connected_slaves() == 0
    })
    .await;
    master.shutdown();

    // A slave further behind than max_gap_not_in_sync is not waited for.
    let c = tempfile::tempdir().unwrap();
    let far_store = open(c.path());
    let near = HaConfig {
        max_gap_not_in_sync: 100,
        ..ha_config()
    };
    let master = HaService::start_master(Arc::clone(&far_store), near)
        .await
        .unwrap();
    let mut behind = TcpStream::connect(master.local_addr().unwrap())
        .await
        .unwrap();
    behind.write_all(&0i64.to_be_bytes()).await.unwrap();
    eventually(LONG, "the lagging slave", || master.connected_slaves() == 1).await;
    let r = put_range(&far_store, 0, 3).await;
    assert_eq!(
        master.wait_for_slave(end(&r), Duration::from_secs(1)).await,
        SlaveAck::NoSlave
    );
    master.shutdown();
    assert_eq!(
        master.wait_for_slave(end(&r), Duration::from_secs(1)).await,
        SlaveAck::NoSlave
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_slave_resumes_from_its_own_offset() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master_store = open(a.path());
    let master = HaService::start_master(Arc::clone(&master_store), ha_config())
        .await
        .unwrap();
    put_range(&master_store, 0, 150).await;
    let slave_store = open(b.path());
    let slave = slave_of(&slave_store, &master);
    caught_up(&master_store, &slave_store).await;
    let had = slave_store.max_commit_log_offset();
    slave.shutdown();
    drop(slave);
    eventually(LONG, "the slave to go", || master.connected_slaves() == 0).await;
    slave_store.shutdown();
    drop(slave_store);

    put_range(&master_store, 150, 250).await;
    let slave_store = open(b.path());
    assert_eq!(slave_store.max_commit_log_offset(), had);
    let slave = slave_of(&slave_store, &master);
    eventually(LONG, "the slave to return", || {
        master.connected_slaves() == 1
    })
    .await;
    assert_eq!(master.status().slaves[0].start_offset, had);
    caught_up(&master_store, &slave_store).await;
    assert_same(&master_store, &slave_store, 250);
    slave.shutdown();
    master.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_frames_split_records_and_the_stores_still_match() {
    for (batch, messages) in [(1usize, 12usize), (97, 120), (4093, 200)] {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (master_store, slave_store) = (open(a.path()), open(b.path()));
        put_range(&master_store, 0, messages / 2).await;
        let config = HaConfig {
            transfer_batch_size: batch,
            ..ha_config()
        };
        let master = HaService::start_master(Arc::clone(&master_store), config)
            .await
            .unwrap();
        let slave = slave_of(&slave_store, &master);
        // Some while it streams, some after.
        put_range(&master_store, messages / 2, messages).await;
        caught_up(&master_store, &slave_store).await;
        assert_same(&master_store, &slave_store, messages);
        slave.shutdown();
        master.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_slave_starts_at_the_masters_oldest_segment() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (master_store, slave_store) = (open(a.path()), open(b.path()));
    put_range(&master_store, 0, 300).await;
    master_store.flush().unwrap();
    assert!(master_store.delete_expired_files(true).unwrap() > 0);
    put_range(&master_store, 300, 400).await;
    let min = master_store.min_commit_log_offset();
    assert!(min > 0);
    let master = HaService::start_master(Arc::clone(&master_store), ha_config())
        .await
        .unwrap();
    let slave = slave_of(&slave_store, &master);
    caught_up(&master_store, &slave_store).await;
    assert_eq!(slave_store.min_commit_log_offset(), min);
    for i in 300..400 {
        let topic = format!("topic{}", i % 2);
        let key = format!("key-{i}");
        assert_eq!(
            slave_store.query_by_key(&topic, &key, 8, 0, i64::MAX),
            master_store.query_by_key(&topic, &key, 8, 0, i64::MAX)
        );
    }
    assert_same(&master_store, &slave_store, 0);
    slave.shutdown();
    master.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slave_ahead_of_its_master_is_refused() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (master_store, slave_store) = (open(a.path()), open(b.path()));
    put_range(&master_store, 0, 10).await;
    put_range(&slave_store, 0, 30).await;
    let had = slave_store.max_commit_log_offset();
    let master = HaService::start_master(Arc::clone(&master_store), ha_config())
        .await
        .unwrap();
    let slave = slave_of(&slave_store, &master);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(master.connected_slaves(), 0);
    assert_eq!(
        slave_store.max_commit_log_offset(),
        had,
        "the slave is not touched"
    );
    assert_eq!(slave.status().last_master_contact_ms, 0);
    slave.shutdown();
    master.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_ha_port_closes_only_that_connection() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (master_store, slave_store) = (open(a.path()), open(b.path()));
    put_range(&master_store, 0, 20).await;
    let master = HaService::start_master(Arc::clone(&master_store), ha_config())
        .await
        .unwrap();
    let addr = master.local_addr().unwrap();
    let slave = slave_of(&slave_store, &master);
    caught_up(&master_store, &slave_store).await;

    let inputs: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &(-1i64).to_be_bytes(),
        &i64::MAX.to_be_bytes(),
        &[0xff; 4096],
    ];
    for input in inputs {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(input).await.unwrap();
        closed_within(&mut s, Duration::from_secs(5)).await;
    }
    // Half a report, then nothing: housekeeping closes it.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0, 0, 0]).await.unwrap();
    closed_within(&mut s, Duration::from_secs(10)).await;
    // A later report beyond anything the master holds.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&0i64.to_be_bytes()).await.unwrap();
    s.write_all(&(1i64 << 50).to_be_bytes()).await.unwrap();
    closed_within(&mut s, Duration::from_secs(5)).await;

    // The real slave never noticed.
    assert_eq!(master.connected_slaves(), 1);
    put_range(&master_store, 20, 40).await;
    caught_up(&master_store, &slave_store).await;
    assert_same(&master_store, &slave_store, 40);
    slave.shutdown();
    master.shutdown();
}

/// A fake master: accept the slave, read its report, send `frame`, and
/// expect the slave to close the connection.
async fn slave_refuses(listener: &TcpListener, frame: &[u8]) -> i64 {
    let (mut s, _) = tokio::time::timeout(LONG, listener.accept())
        .await
        .expect("the slave connects again")
        .unwrap();
    let mut report = [0u8; 8];
    s.read_exact(&mut report).await.unwrap();
    s.write_all(frame).await.unwrap();
    closed_within(&mut s, Duration::from_secs(5)).await;
    i64::from_be_bytes(report)
}

fn frame(offset: i64, len: i32, body: &[u8]) -> Vec<u8> {
    let mut f = offset.to_be_bytes().to_vec();
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(body);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slave_closes_on_bad_frames_and_keeps_its_store() {
    let b = tempfile::tempdir().unwrap();
    let slave_store = open(b.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slave = HaService::start_slave(Arc::clone(&slave_store), ha_config());
    slave.set_master_ha_addr(Some(listener.local_addr().unwrap().to_string()));

    let bad: Vec<Vec<u8>> = vec![
        frame(0, i32::MAX, b""),
        frame(0, -1, b""),
        frame(-8, 0, b""),
        // Not a record.
        frame(0, 200, &[0xAB; 200]),
        // An empty slave starts where the master says, but only at a
        // segment start.
        frame(12345, 0, b""),
    ];
    for f in &bad {
        assert_eq!(slave_refuses(&listener, f).await, 0);
    }
    assert_eq!(slave_store.max_commit_log_offset(), 0);
    assert!(!slave.status().connected || slave.status().last_master_contact_ms > 0);
    slave.shutdown();
}
