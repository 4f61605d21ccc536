//! Three Raft members over loopback TCP, each with its own store: sends
//! are committed on a majority, a new leader takes over when the leader
//! stops, and a member that comes back catches up; every member ends with
//! the same records and the same consume queues.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use meridian_raft::node::{RaftNode, RaftOptions, SendOutcome, SubmitError};
use meridian_raft::peers::Peers;
use meridian_store::{MessageStore, PutMessage, StoreConfig};

const SEGMENT: u64 = 64 * 1024;

fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

fn store_config(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.mapped_file_size_commit_log = SEGMENT;
    c.consume_queue_entries_per_file = 64;
    c.max_index_num = 1024;
    c.max_hash_slot_num = 256;
    c.max_message_size = 8 * 1024;
    c.disk_max_used_space_ratio = 100;
    c.disk_full_ratio = 100;
    c
}

fn msg(i: usize) -> PutMessage {
    PutMessage {
        topic: "T".into(),
        queue_id: (i % 2) as i32,
        flag: 0,
        body: Bytes::from(format!("message {i} {}", "x".repeat(200 + i % 700))),
        properties: format!("KEYS\u{1}k{i}\u{2}"),
        sys_flag: 0,
        born_timestamp: 1,
        born_host: "10.0.0.1:1".parse().unwrap(),
        store_host: "10.0.0.2:2".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        at_queue_offset: None,
    }
}

struct Member {
    dir: tempfile::TempDir,
    store: Option<Arc<MessageStore>>,
    node: Option<Arc<RaftNode>>,
}

struct Group {
    peers: String,
    members: Vec<Member>,
    preferred: Option<u64>,
    sync_flush: bool,
}

impl Group {
    async fn start(n: usize) -> Group {
        Group::start_with(n, None).await
    }

    async fn start_with(n: usize, preferred: Option<u64>) -> Group {
        let ports = free_ports(n);
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("n{i}-127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(";");
        let mut g = Group {
            peers,
            members: (0..n)
                .map(|_| Member {
                    dir: tempfile::tempdir().unwrap(),
                    store: None,
                    node: None,
                })
                .collect(),
            preferred,
            sync_flush: false,
        };
        for i in 0..n {
            g.start_member(i).await;
        }
        g
    }

    async fn start_member(&mut self, i: usize) {
        let m = &mut self.members[i];
        let mut config = store_config(m.dir.path());
        if self.sync_flush {
            config.flush_disk_type = meridian_store::FlushDiskType::SyncFlush;
        }
        let (store, _) = MessageStore::open(config).unwrap();
        let peers = Peers::parse("g", &self.peers, &format!("n{i}")).unwrap();
        let mut opts = RaftOptions::new(peers, m.dir.path().join("raft"), SEGMENT);
        opts.preferred_leader = self.preferred;
        opts.sync_flush = self.sync_flush;
        let node = RaftNode::start(Arc::clone(&store), opts).await.unwrap();
        m.store = Some(store);
        m.node = Some(node);
    }

    async fn stop_member(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(node) = m.node.take() {
            node.shutdown().await;
        }
        if let Some(store) = m.store.take() {
            store.shutdown();
        }
    }

    async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for (i, m) in self.members.iter().enumerate() {
                if let Some(node) = &m.node {
                    if node.role().borrow().leader {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader elected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Send `msgs` one by one through whoever leads; returns how many were stored.
    async fn send(&self, from: usize, count: usize) -> usize {
        let mut ok = 0;
        for i in from..from + count {
            // Leadership may move between looking and sending: a send that
            // certainly stored nothing is sent again.
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let leader = self.leader().await;
                let node = self.members[leader].node.as_ref().unwrap();
                match node.submit(vec![msg(i)]) {
                    Ok(fut) => match fut.await {
                        SendOutcome::Stored(r) => {
                            assert_eq!(r.len(), 1);
                            ok += 1;
                            break;
                        }
                        SendOutcome::NotLeader(_) => {}
                        other => panic!("send {i}: {other:?}"),
                    },
                    Err(SubmitError::NotLeader(_)) => {}
                    Err(e) => panic!("send {i}: {e:?}"),
                }
                assert!(Instant::now() < deadline, "send {i}: no leader took it");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        ok
    }

    /// Wait until every running member has applied `count` messages.
    async fn wait_applied(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let done = self
                .members
                .iter()
                .filter_map(|m| m.store.as_ref())
                .all(|s| {
                    s.max_offset_in_queue("T", 0) + s.max_offset_in_queue("T", 1) == count as i64
                });
            if done {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "members did not apply {count} messages"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Member `i`'s retention deletes every segment it may, whatever its
    /// age; at least one must go. A pass may find nothing to delete yet —
    /// the commit log not flushed past a segment, or the last entry's
    /// apply not yet recorded for the Raft log to let go of — as the
    /// broker's periodic passes may; then it is run again, for up to 10 s.
    async fn force_retention(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let store = self.members[i].store.clone().unwrap();
            let deleted = tokio::task::spawn_blocking(move || store.delete_expired_files(true))
                .await
                .unwrap()
                .unwrap();
            if deleted > 0 {
                return;
            }
            assert!(Instant::now() < deadline, "member n{i} deleted no segment");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn queues(&self, i: usize) -> Vec<Vec<(i64, i64, Bytes)>> {
        let s = self.members[i].store.as_ref().unwrap();
        (0..2).map(|q| read_queue(s, q, 0)).collect()
    }
}

/// Queue `q` of topic "T" from `from` on: (queue offset, commit-log
/// offset, body) per message.
fn read_queue(s: &MessageStore, q: i32, mut from: i64) -> Vec<(i64, i64, Bytes)> {
    let mut out = Vec::new();
    loop {
        let r = s.get_messages("T", q, from, 32, usize::MAX, &|_| true);
        if r.messages.is_empty() {
            return out;
        }
        for m in &r.messages {
            let v = meridian_protocol::message::parse_record(m).unwrap();
            out.push((
                v.queue_offset,
                v.commit_log_offset,
                Bytes::copy_from_slice(v.body),
            ));
        }
        from = r.next_begin_offset;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicate_fail_over_and_catch_up() {
    let mut g = Group::start(3).await;
    assert_eq!(g.send(0, 50).await, 50);
    g.wait_applied(50).await;
    let first = g.leader().await;
    let others: Vec<usize> = (0..3).filter(|&i| i != first).collect();
    for &i in &others {
        assert!(!g.members[i].node.as_ref().unwrap().role().borrow().leader);
    }

    // The leader stops: one of the others takes over.
    g.stop_member(first).await;
    let t = Instant::now();
    let second = g.leader().await;
    assert_ne!(second, first);
    eprintln!("new leader n{second} after {:?}", t.elapsed());
    assert_eq!(g.send(50, 50).await, 50);
    g.wait_applied(100).await;

    // The old leader comes back as a follower and catches up.
    g.start_member(first).await;
    assert_eq!(g.send(100, 20).await, 20);
    g.wait_applied(120).await;
    let reference = g.queues(second);
    assert_eq!(reference[0].len() + reference[1].len(), 120);
    for (q, entries) in reference.iter().enumerate() {
        let offsets: Vec<i64> = entries.iter().map(|e| e.0).collect();
        assert_eq!(
            offsets,
            (0..entries.len() as i64).collect::<Vec<_>>(),
            "queue {q} gap-free"
        );
    }
    for i in 0..3 {
        assert_eq!(g.queues(i), reference, "member n{i} agrees with the leader");
    }
    let status = g.members[second].node.as_ref().unwrap().status();
    assert_eq!(status.leader_id, Some(second as u64));
    assert_eq!(status.peers.len(), 3);
    for i in 0..3 {
        g.stop_member(i).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_refuses_sends_and_no_majority_means_no_send_ok() {
    let mut g = Group::start(3).await;
    let leader = g.leader().await;
    let follower = (leader + 1) % 3;
    // Once the follower has heard from the leader, it names it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match g.members[follower]
            .node
            .as_ref()
            .unwrap()
            .submit(vec![msg(0)])
        {
            Err(SubmitError::NotLeader(Some(l))) => {
                assert_eq!(l, leader as u64);
                break;
            }
            Err(SubmitError::NotLeader(None)) => {
                assert!(
                    Instant::now() < deadline,
                    "the follower never learned the leader"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("unexpected {e:?}"),
            Ok(_) => panic!("a follower accepted a send"),
        }
    }
    assert_eq!(g.send(0, 10).await, 10);
    // Both followers stop: the leader cannot commit.
    for i in 0..3 {
        if i != leader {
            g.stop_member(i).await;
        }
    }
    let node = g.members[leader].node.clone().unwrap();
    let mut acked = 0;
    for i in 10..15 {
        if let Ok(fut) = node.submit(vec![msg(i)]) {
            let outcome = tokio::time::timeout(Duration::from_secs(7), fut).await;
            if let Ok(SendOutcome::Stored(_)) = outcome {
                acked += 1;
            }
        }
    }
    assert_eq!(acked, 0, "no SEND_OK without a majority");
    let s = g.members[leader].store.as_ref().unwrap();
    assert_eq!(
        s.max_offset_in_queue("T", 0) + s.max_offset_in_queue("T", 1),
        10
    );
    g.stop_member(leader).await;
}

/// Retention deletes old segments only once the Raft log lets go of them;
/// replication and restarts go on afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_purges_the_raft_log_first() {
    let mut g = Group::start(3).await;
    assert_eq!(g.send(0, 400).await, 400);
    g.wait_applied(400).await;
    for i in 0..3 {
        g.force_retention(i).await;
        assert!(g.members[i].store.as_ref().unwrap().min_commit_log_offset() > 0);
    }
    assert_eq!(g.send(400, 50).await, 50);
    g.wait_applied(450).await;
    // A member restarted after the purge starts from its purged log.
    let leader = g.leader().await;
    let f = (leader + 1) % 3;
    g.stop_member(f).await;
    assert_eq!(g.send(450, 50).await, 50);
    g.start_member(f).await;
    g.wait_applied(500).await;
    let reference = g.queues(leader);
    for i in 0..3 {
        assert_eq!(g.queues(i), reference, "member n{i} agrees with the leader");
    }
    for i in 0..3 {
        g.stop_member(i).await;
    }
}

/// A member whose store was deleted after the others purged the entries
/// it would need to catch up is re-seeded from the leader's snapshot: its
/// log starts where the leader's now does, and from there it holds exactly
/// what the leader holds, including what was sent while it was away.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_emptied_member_is_reseeded_after_the_others_purged_their_log() {
    let mut g = Group::start(3).await;
    assert_eq!(g.send(0, 400).await, 400);
    g.wait_applied(400).await;
    let leader = g.leader().await;
    let f = (leader + 1) % 3;
    g.stop_member(f).await;
    // Its disk is lost.
    let dir = g.members[f].dir.path().to_path_buf();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
    // The others purge what it would need.
    for i in (0..3).filter(|&i| i != f) {
        g.force_retention(i).await;
    }
    assert_eq!(g.send(400, 50).await, 50);
    g.start_member(f).await;
    g.wait_applied(450).await;
    assert_eq!(g.send(450, 50).await, 50);
    g.wait_applied(500).await;
    let fs = g.members[f].store.clone().unwrap();
    let ls = g.members[leader].store.clone().unwrap();
    assert!(
        fs.min_commit_log_offset() > 0,
        "re-seeded, not copied from 0"
    );
    assert_eq!(fs.min_commit_log_offset(), ls.min_commit_log_offset());
    let mut seen = 0;
    for q in 0..2 {
        let from = fs.min_offset_in_queue("T", q);
        let mine = read_queue(&fs, q, from);
        assert_eq!(
            mine,
            read_queue(&ls, q, from),
            "queue {q} of the re-seeded member"
        );
        assert_eq!(
            mine.last().map(|e| e.0 + 1),
            Some(ls.max_offset_in_queue("T", q))
        );
        seen += mine.len();
    }
    assert!(
        seen >= 100,
        "the re-seeded member holds what came after the purge ({seen})"
    );
    for i in 0..3 {
        g.stop_member(i).await;
    }
}

/// A member that lacks purged entries but holds records discards them for
/// the leader's log; if it stops half-way (the re-seed marker is still
/// there), it empties itself on start and the leader re-seeds it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_far_behind_member_is_reseeded_even_after_stopping_half_way() {
    let mut g = Group::start(3).await;
    assert_eq!(g.send(0, 400).await, 400);
    g.wait_applied(400).await;
    let leader = g.leader().await;
    let f = (leader + 1) % 3;
    g.stop_member(f).await;
    for i in (0..3).filter(|&i| i != f) {
        g.force_retention(i).await;
    }
    assert_eq!(g.send(400, 50).await, 50);
    // As a member stopped in the middle of discarding its log leaves it:
    // the marker written, records and queues gone, the Raft index and meta
    // still describing them.
    let root = g.members[f].dir.path().to_path_buf();
    for sub in ["commitlog", "consumequeue"] {
        let _ = std::fs::remove_dir_all(root.join(sub));
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let marker = root.join("raft").join("reseeding");
    std::fs::write(&marker, b"").unwrap();
    g.start_member(f).await;
    g.wait_applied(450).await;
    assert!(
        !marker.exists(),
        "the marker is gone once the member is emptied"
    );
    assert_eq!(g.send(450, 50).await, 50);
    g.wait_applied(500).await;
    let fs = g.members[f].store.clone().unwrap();
    let ls = g.members[leader].store.clone().unwrap();
    assert_eq!(fs.min_commit_log_offset(), ls.min_commit_log_offset());
    assert!(
        fs.min_commit_log_offset() > 0,
        "re-seeded, not copied from 0"
    );
    for q in 0..2 {
        let from = fs.min_offset_in_queue("T", q);
        assert_eq!(
            read_queue(&fs, q, from),
            read_queue(&ls, q, from),
            "queue {q} of the re-seeded member"
        );
        assert_eq!(
            fs.max_offset_in_queue("T", q),
            ls.max_offset_in_queue("T", q)
        );
    }
    for i in 0..3 {
        g.stop_member(i).await;
    }
}

/// With `preferredLeaderId`, leadership ends up on that member, and moves
/// back to it after it was away.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn preferred_leader_takes_over_once_caught_up() {
    let mut g = Group::start_with(3, Some(2)).await;
    let wait_for_n2 = |g: &Group| {
        let node = g.members[2].node.clone().unwrap();
        async move {
            let mut role = node.role();
            let led = tokio::time::timeout(Duration::from_secs(20), async {
                role.wait_for(|r| r.leader).await.is_ok()
            })
            .await;
            led == Ok(true)
        }
    };
    assert!(wait_for_n2(&g).await, "n2 never took over");
    assert_eq!(g.leader().await, 2);
    assert_eq!(g.send(0, 20).await, 20);
    g.stop_member(2).await;
    assert_ne!(g.leader().await, 2);
    assert_eq!(g.send(20, 20).await, 20);
    g.start_member(2).await;
    assert!(wait_for_n2(&g).await, "n2 never took over again");
    assert_eq!(g.send(40, 20).await, 20);
    g.wait_applied(60).await;
    for i in 0..3 {
        g.stop_member(i).await;
    }
}

/// A member whose disk is lost is replaced by an empty one with the same
/// id: it copies the whole log from the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_with_a_lost_disk_is_replaced_by_an_empty_one() {
    let mut g = Group::start(3).await;
    assert_eq!(g.send(0, 100).await, 100);
    let leader = g.leader().await;
    let lost = (leader + 1) % 3;
    g.stop_member(lost).await;
    g.members[lost].dir = tempfile::tempdir().unwrap();
    assert_eq!(g.send(100, 50).await, 50);
    g.start_member(lost).await;
    g.wait_applied(150).await;
    let reference = g.queues(leader);
    assert_eq!(g.queues(lost), reference);
    for i in 0..3 {
        g.stop_member(i).await;
    }
}

/// Under SYNC_FLUSH a member acknowledges an entry only once it is on disk
/// (the flush waiter): sends still commit, fail over and agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_flush_members_commit_and_fail_over() {
    let mut g = Group::start(3).await;
    for i in 0..3 {
        g.stop_member(i).await;
    }
    g.sync_flush = true;
    for i in 0..3 {
        g.start_member(i).await;
    }
    assert_eq!(g.send(0, 100).await, 100);
    let first = g.leader().await;
    g.stop_member(first).await;
    assert_eq!(g.send(100, 50).await, 50);
    g.start_member(first).await;
    g.wait_applied(150).await;
    let reference = g.queues(g.leader().await);
    for i in 0..3 {
        assert_eq!(g.queues(i), reference, "member n{i} agrees with the leader");
        // A member that was catching up may apply entries the majority
        // already holds on disk a moment before its own flush of them
        // returns; its flush must then catch up.
        let s = g.members[i].store.as_ref().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.flushed_offset() < s.raft_visible() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            s.flushed_offset() >= s.raft_visible(),
            "n{i}: applied entries are on disk"
        );
    }
    for i in 0..3 {
        g.stop_member(i).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_share_entries_and_each_hears_its_own_results() {
    let mut g = Group::start(3).await;
    let leader = g.leader().await;
    let node = g.members[leader].node.clone().unwrap();
    let before = node.status().last_log_index.unwrap_or(0);

    // 300 sends, every fifth a batch of three, all in flight at once.
    const SENDS: usize = 300;
    let mut pending = Vec::new();
    let mut next = 0;
    for s in 0..SENDS {
        let n = if s % 5 == 0 { 3 } else { 1 };
        let msgs: Vec<PutMessage> = (next..next + n).map(msg).collect();
        next += n;
        let bodies: Vec<Bytes> = msgs.iter().map(|m| m.body.clone()).collect();
        pending.push((
            bodies,
            node.submit(msgs).expect("the leader takes the send"),
        ));
    }
    for (s, (bodies, fut)) in pending.into_iter().enumerate() {
        let SendOutcome::Stored(results) = fut.await else {
            panic!("send {s} was not stored");
        };
        assert_eq!(
            results.len(),
            bodies.len(),
            "send {s}: one result per message"
        );
        let store = g.members[leader].store.as_ref().unwrap();
        for (r, body) in results.iter().zip(&bodies) {
            let record = store.read_record(r.commit_log_offset).unwrap();
            let v = meridian_protocol::message::parse_record(&record).unwrap();
            assert_eq!(
                v.body,
                &body[..],
                "send {s}: its result names its own message"
            );
            assert_eq!(v.queue_offset, r.queue_offset, "send {s}: queue offset");
        }
    }
    g.wait_applied(next).await;
    let entries = node.status().last_log_index.unwrap() - before;
    eprintln!("{SENDS} sends in {entries} entries");
    assert!(
        (entries as usize) < SENDS,
        "sends queued together share entries ({entries} entries for {SENDS} sends)"
    );
    let reference = g.queues(leader);
    for i in 0..3 {
        assert_eq!(g.queues(i), reference, "member n{i} agrees with the leader");
    }
    for i in 0..3 {
        g.stop_member(i).await;
    }
}
