//! Regions and the relay between them, with real processes: three regions
//! on loopback (each its own name server and broker), `meridian relay`
//! processes linking them, stock `rocketmq-client-rust` producers and
//! consumers in every region. Invariant 5: every region holds each origin
//! queue's records once, at their origin offsets and in origin order,
//! whatever the topology; nothing flows back into its origin region.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rocketmq_client_rust::{DefaultMQProducer, MQPushConsumer, SendStatus};
use support::regions::{within, Region, Relay};
use support::{message, push_consumer, start_producer, unique, Inbox};

const QUEUES: u32 = 4;

/// Send `n` keyed, tagged messages with a user property from a stock
/// producer in `region`; returns their bodies.
async fn produce(
    producer: &DefaultMQProducer,
    region: &str,
    topic: &str,
    from: usize,
    n: usize,
) -> Vec<String> {
    let mut bodies = Vec::new();
    for i in from..from + n {
        let body = format!("{region}-{i}");
        let msg = message(
            topic,
            &format!("Tag{}", i % 3),
            &format!("key-{body}"),
            &body,
            &[("born-in", region)],
        );
        let r = producer
            .send(msg)
            .await
            .unwrap_or_else(|e| panic!("send {body}: {}", support::describe(&e)))
            .expect("a sync send returns a result");
        assert_eq!(r.send_status, SendStatus::SendOk, "status of {body}");
        bodies.push(body);
    }
    bodies
}

/// Wait until `region` holds exactly the messages `expected` (by body), each
/// once, and check each is intact: key, tag, user property, the region it
/// was born in, and — for copies — where it came from.
async fn expect_held(region: &Region, topic: &str, expected: &[String]) {
    let held = within(Duration::from_secs(60), || async {
        region.read_all(topic).await.len() >= expected.len()
    })
    .await;
    let all = region.read_all(topic).await;
    assert!(
        held,
        "region {} holds {} of {} messages",
        region.name,
        all.len(),
        expected.len()
    );
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in &all {
        let body = String::from_utf8_lossy(&m.body).into_owned();
        *counts.entry(body.clone()).or_default() += 1;
        let born = body.split('-').next().unwrap_or_default();
        assert_eq!(
            m.keys().next(),
            Some(format!("key-{body}").as_str()),
            "key of {body}"
        );
        assert_eq!(m.property("born-in"), Some(born), "user property of {body}");
        assert_eq!(
            m.property("MSG_REGION"),
            Some(born),
            "MSG_REGION of {body} in {}",
            region.name
        );
        let tag = m.tags().unwrap_or_default();
        assert!(tag.starts_with("Tag"), "tag of {body}: {tag}");
        match m.property("MERIDIAN_ORIGIN") {
            None => assert_eq!(born, region.name, "{body} in {} has no origin", region.name),
            Some(origin) => {
                assert!(
                    origin.starts_with(&format!("{born}/broker-{born}/")),
                    "origin of {body}: {origin}"
                );
                assert_ne!(born, region.name, "{body} came back into its origin region");
                // A copy sits at its origin offset.
                assert!(
                    origin.ends_with(&format!("/{}", m.queue_offset)),
                    "{body} at {} but origin {origin}",
                    m.queue_offset
                );
            }
        }
    }
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dups.is_empty(),
        "region {} holds messages twice: {dups:?}",
        region.name
    );
    let missing: Vec<_> = expected
        .iter()
        .filter(|b| !counts.contains_key(*b))
        .collect();
    assert!(
        missing.is_empty(),
        "region {} misses {missing:?}",
        region.name
    );
    assert_eq!(
        all.len(),
        expected.len(),
        "region {} holds strays",
        region.name
    );
}

/// Regions east, west and north, each with `topic`, and a directory for
/// relay files.
fn three_regions(topic: &str) -> ([Region; 3], tempfile::TempDir) {
    let regions = [
        Region::start("east", ""),
        Region::start("west", ""),
        Region::start("north", ""),
    ];
    for r in &regions {
        r.create_topic(topic, QUEUES);
    }
    (regions, tempfile::tempdir().expect("temp dir"))
}

/// Regions east and west (`conf` added to their broker.conf), each with
/// `topic`, relaying it both ways (`relay_conf` added to each relay.conf);
/// and the directory of the relays' files. Bind them in this order: the
/// relays stop first, the directory goes last.
fn two_way(
    topic: &str,
    conf: &str,
    relay_conf: &str,
) -> (tempfile::TempDir, Region, Region, [Relay; 2]) {
    let east = Region::start("east", conf);
    let west = Region::start("west", conf);
    east.create_topic(topic, QUEUES);
    west.create_topic(topic, QUEUES);
    let dir = tempfile::tempdir().expect("temp dir");
    let relays = [
        Relay::start(dir.path(), &east, &west, topic, relay_conf),
        Relay::start(dir.path(), &west, &east, topic, relay_conf),
    ];
    (dir, east, west, relays)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ring_of_three_regions_gives_every_region_every_message_once() {
    let topic = unique("ring");
    let (regions, dir) = three_regions(&topic);
    // east → west → north → east: east's messages reach north through west.
    let mut relays = [
        Relay::start(dir.path(), &regions[0], &regions[1], &topic, ""),
        Relay::start(dir.path(), &regions[1], &regions[2], &topic, ""),
        Relay::start(dir.path(), &regions[2], &regions[0], &topic, ""),
    ];
    let mut producers = Vec::new();
    for r in &regions {
        producers.push(start_producer(&r.namesrv()).await);
    }
    let mut expected = Vec::new();
    for (r, p) in regions.iter().zip(&producers) {
        expected.extend(produce(p, &r.name, &topic, 0, 30).await);
    }
    // A relay killed mid-stream and restarted resumes where its target's
    // copy ends: nothing skipped, nothing doubled.
    relays[1].kill9();
    for (r, p) in regions.iter().zip(&producers) {
        expected.extend(produce(p, &r.name, &topic, 30, 30).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    relays[1].restart();
    for (r, p) in regions.iter().zip(&producers) {
        expected.extend(produce(p, &r.name, &topic, 60, 20).await);
    }
    for r in &regions {
        expect_held(r, &topic, &expected).await;
    }
    // Stock consumers, one per region, each receive every region's
    // messages once.
    for r in &regions {
        let inbox = Inbox::new();
        let mut consumer = push_consumer(&r.namesrv(), &unique("cg")).build();
        consumer.subscribe(&topic, "*").await.expect("subscribe");
        consumer.register_message_listener_concurrently(inbox.listener());
        consumer.start().await.expect("consumer starts");
        inbox.expect_exactly_once(&expected).await;
        consumer.shutdown().await;
    }
    // Producers wrote only to each region's own queues: the copies are
    // read-only queues after them.
    let admin = meridian_client::Admin::new(&regions[0].namesrv());
    let route = admin.route(&topic).await.expect("route").expect("a route");
    let qd = &route.queue_datas[0];
    assert_eq!(qd.write_queue_nums, QUEUES as i32);
    assert_eq!(
        qd.read_queue_nums,
        3 * QUEUES as i32,
        "own queues and copies of two regions' queues"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_mesh_stores_each_message_once_and_refuses_the_second_path() {
    let topic = unique("mesh");
    let (regions, dir) = three_regions(&topic);
    // Every ordered pair: each message reaches each other region directly
    // and again through the third.
    let mut relays = Vec::new();
    for (i, src) in regions.iter().enumerate() {
        for (j, dst) in regions.iter().enumerate() {
            if i != j {
                relays.push(Relay::start(dir.path(), src, dst, &topic, ""));
            }
        }
    }
    let mut expected = Vec::new();
    for r in &regions {
        let p = start_producer(&r.namesrv()).await;
        expected.extend(produce(&p, &r.name, &topic, 0, 40).await);
    }
    for r in &regions {
        expect_held(r, &topic, &expected).await;
    }
    // Every region stored each other region's messages exactly once,
    // though each could reach it by two paths (a second path either finds
    // the copy already ahead, or is refused as present).
    let admin = meridian_client::Admin::new(&regions[0].namesrv());
    let mut appended = 0u64;
    let mut present = 0u64;
    for r in &regions {
        let rt = admin.runtime_info(&r.broker()).await.expect("brokerStatus");
        appended += rt["relayAppendedTotal"].parse::<u64>().unwrap();
        present += rt["relayPresentTotal"].parse::<u64>().unwrap();
        assert_eq!(
            rt.get("regionId").map(String::as_str),
            Some(r.name.as_str())
        );
    }
    assert_eq!(
        appended,
        2 * 120,
        "each region stored each other region's 80 messages once"
    );
    eprintln!("copies refused as already present: {present}");
    drop(relays);
}

/// Wait up to 30 s until the offsets `group` committed on `topic`, as
/// `region`'s broker holds them (carried in, or its own), add up to
/// `total`.
async fn offsets_carried(region: &Region, topic: &str, group: &str, total: i64) -> bool {
    let admin = meridian_client::Admin::new(&region.namesrv());
    within(Duration::from_secs(30), || async {
        let mut req = meridian_protocol::RemotingCommand::request(
            meridian_protocol::codes::request_code::RELAY_GET_OFFSETS,
        );
        req.set_ext("topics", topic);
        let Ok(r) = admin.call(&region.broker(), req).await else {
            return false;
        };
        let list: Vec<meridian_protocol::body::relay::CarriedOffset> =
            serde_json::from_slice(&r.body).unwrap_or_default();
        list.iter()
            .filter(|o| o.group == group)
            .map(|o| o.offset)
            .sum::<i64>()
            == total
    })
    .await
}

/// Start a stock push consumer of `group` on `topic` in `region`.
async fn consume(
    region: &Region,
    group: &str,
    topic: &str,
    inbox: &Inbox,
) -> rocketmq_client_rust::DefaultMQPushConsumer {
    let mut consumer = push_consumer(&region.namesrv(), group).build();
    consumer.subscribe(topic, "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(inbox.listener());
    consumer.start().await.expect("consumer starts");
    consumer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_group_moved_to_another_region_receives_exactly_the_rest() {
    let topic = unique("move");
    let (regions, dir) = three_regions(&topic);
    let [east, west, _] = &regions;
    let _relays = [
        Relay::start(dir.path(), east, west, &topic, "offsetSyncIntervalMs=300"),
        Relay::start(dir.path(), west, east, &topic, "offsetSyncIntervalMs=300"),
    ];
    let (pe, pw) = (
        start_producer(&east.namesrv()).await,
        start_producer(&west.namesrv()).await,
    );
    let mut first = produce(&pe, "east", &topic, 0, 30).await;
    first.extend(produce(&pw, "west", &topic, 0, 30).await);
    expect_held(east, &topic, &first).await;

    // The group consumes everything there is in east, then stops (its
    // offsets are committed as it shuts down)...
    let group = unique("moving");
    let inbox = Inbox::new();
    let mut consumer = consume(east, &group, &topic, &inbox).await;
    inbox.expect_exactly_once(&first).await;
    consumer.shutdown().await;
    // ...both regions take more messages...
    let mut rest = produce(&pe, "east", &topic, 30, 20).await;
    rest.extend(produce(&pw, "west", &topic, 30, 20).await);
    let mut all = first.clone();
    all.extend(rest.iter().cloned());
    expect_held(west, &topic, &all).await;
    // ...and the offsets it committed in east reach west: for east's own
    // queues as offsets of west's copies, for east's copies of west's
    // queues as offsets of west's own queues.
    let carried = offsets_carried(west, &topic, &group, first.len() as i64).await;
    assert!(carried, "the group's offsets never reached west");
    // In west the group receives exactly what it had not consumed in east.
    let inbox = Inbox::new();
    let mut consumer = consume(west, &group, &topic, &inbox).await;
    inbox.expect_exactly_once(&rest).await;
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_appends_that_break_the_rules_are_refused_and_store_nothing() {
    use meridian_protocol::codes::{request_code, response_code};
    use meridian_protocol::header::relay::{RelayAppendRequestHeader, RelayAppendResponseHeader};
    use meridian_protocol::RemotingCommand;

    let topic = unique("rules");
    let region = Region::start("east", "");
    region.create_topic(&topic, 1);
    let admin = meridian_client::Admin::new(&region.namesrv());
    let producer = meridian_client::Producer::new(&region.namesrv(), "rules-producer");
    for i in 0..3 {
        let msg = meridian_client::producer::Message {
            topic: topic.clone(),
            body: bytes::Bytes::from(format!("record {i}")),
            keys: vec![format!("k{i}")],
            ..Default::default()
        };
        producer
            .send_to(&region.broker(), "broker-east", 0, &msg)
            .await
            .expect("send");
    }
    // Three stored records, as a pull returns them.
    let pull = meridian_client::consumer::Pull {
        group: "rules-reader",
        topic: &topic,
        broker_name: "broker-east",
        queue_id: 0,
        offset: 0,
        max_msgs: 3,
        suspend: None,
    };
    let pulled = admin
        .call(&region.broker(), pull.request())
        .await
        .expect("pull");
    assert_eq!(pulled.code, response_code::SUCCESS);
    let records: Vec<bytes::Bytes> = {
        let mut out = Vec::new();
        let mut rest = pulled.body.clone();
        while !rest.is_empty() {
            let (_, used) = meridian_protocol::message::decode_record_bytes(&rest).expect("record");
            out.push(rest.slice(..used));
            rest = rest.slice(used..);
        }
        out
    };
    assert_eq!(records.len(), 3);
    let append = |origin_region: &str, origin_broker: &str, body: Vec<&bytes::Bytes>| {
        let mut req = RemotingCommand::request(request_code::RELAY_APPEND).with_body(
            body.into_iter()
                .flat_map(|b| b.iter().copied())
                .collect::<Vec<u8>>(),
        );
        RelayAppendRequestHeader {
            topic: topic.clone(),
            origin_region: origin_region.into(),
            origin_broker: origin_broker.into(),
            origin_queue_id: 0,
            write_queue_nums: None,
        }
        .write(&mut req);
        let (admin, broker) = (&admin, region.broker());
        async move { admin.call(&broker, req).await.expect("append answered") }
    };
    // Never back into the origin region.
    let r = append("east", "broker-east", vec![&records[0]]).await;
    assert_eq!(r.code, response_code::NO_PERMISSION, "{:?}", r.remark);
    // Not an origin queue name.
    let r = append("west", "", vec![&records[0]]).await;
    assert_eq!(r.code, response_code::SYSTEM_ERROR, "{:?}", r.remark);
    // Not a record.
    let garbage = bytes::Bytes::from_static(b"\x00\x00\x00\x10not a record at all");
    let r = append("west", "broker-west", vec![&garbage]).await;
    assert_eq!(r.code, response_code::MESSAGE_ILLEGAL, "{:?}", r.remark);
    // Offsets that skip one.
    let r = append("west", "broker-west", vec![&records[0], &records[2]]).await;
    assert_eq!(r.code, response_code::MESSAGE_ILLEGAL, "{:?}", r.remark);
    // None of that stored anything: the copy is empty, and a valid append
    // then stores all three, once.
    let r = append("west", "broker-west", vec![]).await;
    assert_eq!(
        RelayAppendResponseHeader::parse(&r)
            .expect("header")
            .next_offset,
        0
    );
    let r = append("west", "broker-west", records.iter().collect()).await;
    let h = RelayAppendResponseHeader::parse(&r).expect("header");
    assert_eq!(
        (r.code, h.appended, h.present, h.next_offset),
        (response_code::SUCCESS, 3, 0, 3)
    );
    let r = append("west", "broker-west", records.iter().collect()).await;
    let h = RelayAppendResponseHeader::parse(&r).expect("header");
    assert_eq!(
        (r.code, h.appended, h.present, h.next_offset),
        (response_code::SUCCESS, 0, 3, 3)
    );
    let copy = support::queues::read_queue(&admin, &region.broker(), &topic, h.queue_id).await;
    let keys: Vec<String> = copy
        .iter()
        .map(|m| m.keys().next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(keys, ["k0", "k1", "k2"]);
    assert_eq!(
        copy[1].property("MERIDIAN_ORIGIN"),
        Some("west/broker-west/0/1")
    );
}

/// The counters a relay process answers on its status port.
async fn relay_status(port: u16) -> BTreeMap<String, String> {
    let admin = meridian_client::Admin::new("127.0.0.1:1");
    admin
        .runtime_info(&format!("127.0.0.1:{port}"))
        .await
        .unwrap_or_default()
}

/// How many of `topic`'s origin queues a relay's status lists as its
/// streams.
fn streams_of(status: &BTreeMap<String, String>, topic: &str) -> usize {
    let prefix = format!("relay.{topic}.");
    status
        .keys()
        .filter(|k| k.starts_with(&prefix) && k.ends_with(".copyNextOffset"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_processes_of_one_group_share_a_link_and_take_over_a_dead_ones_streams() {
    let topic = unique("shared");
    let east = Region::start("east", "");
    let west = Region::start("west", "");
    // 16 queues: the streams go to the processes by rendezvous hashing,
    // and with 8 one process would get them all once in 128 runs.
    east.create_topic(&topic, 16);
    west.create_topic(&topic, 16);
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = [support::free_port(), support::free_port()];
    let mut relays: Vec<Relay> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            Relay::start_instance(
                dir.path(),
                &east,
                &west,
                &topic,
                &format!("listenPort={port}"),
                i,
            )
        })
        .collect();
    // Both processes see each other and split east's 16 queues between
    // them, each relaying some and none relaying a queue twice.
    let split = within(Duration::from_secs(20), || async {
        let (a, b) = (relay_status(ports[0]).await, relay_status(ports[1]).await);
        let (na, nb) = (streams_of(&a, &topic), streams_of(&b, &topic));
        a.get("relayGroupMembers").map(String::as_str) == Some("2")
            && b.get("relayGroupMembers").map(String::as_str) == Some("2")
            && na > 0
            && nb > 0
            && na + nb == 16
    })
    .await;
    let (a, b) = (relay_status(ports[0]).await, relay_status(ports[1]).await);
    assert!(
        split,
        "the two relays do not split the link: {} and {} streams, members {:?} and {:?}",
        streams_of(&a, &topic),
        streams_of(&b, &topic),
        a.get("relayGroupMembers"),
        b.get("relayGroupMembers")
    );
    let producer = start_producer(&east.namesrv()).await;
    let mut expected = produce(&producer, "east", &topic, 0, 40).await;
    expect_held(&west, &topic, &expected).await;
    // One dies; the other takes over its streams within seconds and
    // relays everything sent meanwhile, once.
    relays[0].kill9();
    let took_over = within(Duration::from_secs(10), || async {
        streams_of(&relay_status(ports[1]).await, &topic) == 16
    })
    .await;
    assert!(
        took_over,
        "the surviving relay holds {} of 16 streams 10 s after the other died",
        streams_of(&relay_status(ports[1]).await, &topic)
    );
    expected.extend(produce(&producer, "east", &topic, 40, 40).await);
    expect_held(&west, &topic, &expected).await;
    // The dead one back: the streams are shared again, still exactly once.
    relays[0].restart();
    expected.extend(produce(&producer, "east", &topic, 80, 40).await);
    expect_held(&west, &topic, &expected).await;
    let rt = meridian_client::Admin::new(&west.namesrv())
        .runtime_info(&west.broker())
        .await
        .expect("brokerStatus");
    assert_eq!(rt["relayAppendedTotal"], "120");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_link_a_killed_target_and_a_raft_leader_change_lose_and_double_nothing() {
    let topic = unique("faults");
    // east relays both ways with west (reached only through a proxy that
    // the test cuts) and with north (a Raft group); west and north reach
    // each other through east.
    let east = Region::start("east", "");
    let mut west = Region::start_behind_proxy("west", 35, "");
    let mut north = Region::start_raft("north", "");
    let admin = meridian_client::Admin::new(&north.namesrv());
    support::raft::leader(&north.group, &admin).await;
    north.master().await;
    for r in [&east, &west, &north] {
        r.create_topic(&topic, QUEUES);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let _relays = [
        Relay::start(dir.path(), &east, &west, &topic, ""),
        Relay::start(dir.path(), &west, &east, &topic, ""),
        Relay::start(dir.path(), &east, &north, &topic, ""),
        Relay::start(dir.path(), &north, &east, &topic, ""),
    ];
    let pe = start_producer(&east.namesrv()).await;
    let pn = start_producer(&north.namesrv()).await;
    let mut expected = Vec::new();
    {
        let mut pw = start_producer(&west.namesrv()).await;
        expected.extend(produce(&pw, "west", &topic, 0, 20).await);
        pw.shutdown().await;
    }
    expected.extend(produce(&pe, "east", &topic, 0, 20).await);
    expected.extend(produce(&pn, "north", &topic, 0, 20).await);
    for r in [&east, &west, &north] {
        expect_held(r, &topic, &expected).await;
    }

    // West cut off for 30 s while east and north take writes: the relays
    // into west time out and retry; once the link is back they continue
    // from what west holds.
    let proxy = west.proxy.as_ref().expect("west is behind a proxy");
    proxy.blackhole();
    for i in 0..3 {
        expected.extend(produce(&pe, "east", &topic, 20 + i * 10, 10).await);
        expected.extend(produce(&pn, "north", &topic, 20 + i * 10, 10).await);
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    proxy.heal();
    expect_held(&west, &topic, &expected).await;

    // West's broker SIGKILLed while east keeps writing, then restarted.
    west.group.kill9(0);
    expected.extend(produce(&pe, "east", &topic, 50, 20).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    west.group.start_broker(0);
    expected.extend(produce(&pe, "east", &topic, 70, 20).await);
    {
        let mut pw = start_producer(&west.namesrv()).await;
        expected.extend(produce(&pw, "west", &topic, 20, 20).await);
        pw.shutdown().await;
    }
    for r in [&east, &west, &north] {
        expect_held(r, &topic, &expected).await;
    }

    // North's Raft leader SIGKILLed while east writes: a new leader holds
    // every copy record the old one acknowledged, and the relay continues
    // into it at the right offsets.
    let leader = support::raft::leader(&north.group, &admin).await;
    expected.extend(produce(&pe, "east", &topic, 90, 20).await);
    north.group.kill9(leader);
    expected.extend(produce(&pe, "east", &topic, 110, 20).await);
    expect_held(&north, &topic, &expected).await;
    north.group.start_broker(leader);
    for r in [&east, &west, &north] {
        expect_held(r, &topic, &expected).await;
    }
    // A stock consumer in every region receives all of it once.
    for r in [&east, &west, &north] {
        let inbox = Inbox::new();
        let mut consumer = consume(r, &unique("cg"), &topic, &inbox).await;
        inbox.expect_exactly_once(&expected).await;
        consumer.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_groups_retries_and_dead_letters_travel_with_its_topic() {
    use meridian_protocol::codes::{request_code, response_code};
    use meridian_protocol::header::consumer::ConsumerSendMsgBackRequestHeader;
    use meridian_protocol::RemotingCommand;

    let topic = unique("retries");
    let fast = "messageDelayLevel=1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s";
    let (_dir, east, west, _relays) = two_way(&topic, fast, "offsetSyncIntervalMs=300");
    let producer = start_producer(&east.namesrv()).await;
    let sent = produce(&producer, "east", &topic, 0, 20).await;
    // Group g consumes everything in east and stops.
    let group = unique("g");
    let inbox = Inbox::new();
    let mut consumer = consume(&east, &group, &topic, &inbox).await;
    inbox.expect_exactly_once(&sent).await;
    consumer.shutdown().await;
    // Then two of its messages come back to it, as a consumer that failed
    // them sends them back: one to be retried (into %RETRY%g after a
    // delay), one straight to the dead-letter topic.
    let admin = meridian_client::Admin::new(&east.namesrv());
    let held = east.read_all(&topic).await;
    for (body, delay_level) in [("east-3", 0), ("east-4", -1)] {
        let m = held
            .iter()
            .find(|m| m.body.as_ref() == body.as_bytes())
            .expect("the message in east");
        let mut req = RemotingCommand::request(request_code::CONSUMER_SEND_MSG_BACK);
        ConsumerSendMsgBackRequestHeader {
            offset: m.commit_log_offset,
            group: group.clone(),
            delay_level,
            origin_msg_id: None,
            origin_topic: Some(topic.clone()),
            unit_mode: false,
            max_reconsume_times: Some(16),
        }
        .write(&mut req);
        let r = admin.call(&east.broker(), req).await.expect("send-back");
        assert_eq!(r.code, response_code::SUCCESS, "{:?}", r.remark);
    }
    // Both reach west with the group's topics: the dead letter is visible
    // there, and the retry waits there, as in east.
    let dlq = format!("%DLQ%{group}");
    let retry = format!("%RETRY%{group}");
    for (t, body) in [(&dlq, "east-4"), (&retry, "east-3")] {
        let arrived = within(Duration::from_secs(30), || async {
            west.read_all(t)
                .await
                .iter()
                .any(|m| m.body.as_ref() == body.as_bytes())
        })
        .await;
        assert!(arrived, "{body} never reached {t} in west");
        let copies: Vec<_> = west
            .read_all(t)
            .await
            .into_iter()
            .filter(|m| m.body.as_ref() == body.as_bytes())
            .collect();
        assert_eq!(copies.len(), 1, "{body} in {t} in west");
        assert!(
            copies[0]
                .property("MERIDIAN_ORIGIN")
                .is_some_and(|o| o.starts_with("east/broker-east/")),
            "{body} in {t} in west is not a copy of east's"
        );
    }
    // The group's offsets reach west; started there, it receives exactly
    // the message that was waiting to be retried, once.
    let carried = offsets_carried(&west, &topic, &group, sent.len() as i64).await;
    assert!(carried, "the group's offsets never reached west");
    let inbox = Inbox::new();
    let mut consumer = consume(&west, &group, &topic, &inbox).await;
    inbox.expect_exactly_once(&["east-3".to_string()]).await;
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tag_filter_carries_only_its_tags_and_keeps_every_offset() {
    let topic = unique("tagged");
    let (regions, dir) = three_regions(&topic);
    let [east, west, north] = &regions;
    // east → west carries Tag0 and Tag1 only; west → north carries what
    // west holds, placeholders included, so north's copy of east's queues
    // has east's offsets too.
    let _relays = [
        Relay::start(
            dir.path(),
            east,
            west,
            &topic,
            "tagFilter=Tag0 || Tag1\noffsetSyncIntervalMs=300",
        ),
        Relay::start(dir.path(), west, north, &topic, ""),
    ];
    let carried = |bodies: &[String]| -> Vec<String> {
        bodies
            .iter()
            .filter(|b| {
                let i: usize = b.split('-').nth(1).unwrap().parse().unwrap();
                i % 3 != 2
            })
            .cloned()
            .collect()
    };
    let producer = start_producer(&east.namesrv()).await;
    let first = produce(&producer, "east", &topic, 0, 30).await;
    expect_held(west, &topic, &carried(&first)).await;
    expect_held(north, &topic, &carried(&first)).await;
    // The Tag2 records are placeholders at their offsets: no body, never
    // delivered.
    let all = west.read_everything(&topic).await;
    let placeholders: Vec<_> = all
        .iter()
        .filter(|m| m.property("MERIDIAN_FILTERED").is_some())
        .collect();
    assert_eq!(placeholders.len(), 10, "one placeholder per Tag2 record");
    assert!(placeholders.iter().all(|m| m.body.is_empty()
        && m.keys().next().is_none()
        && m.property("MERIDIAN_ORIGIN").is_some()));
    // A group that consumed everything in east continues in west with
    // exactly the carried part of what came after.
    let group = unique("tagged-group");
    let inbox = Inbox::new();
    let mut consumer = consume(east, &group, &topic, &inbox).await;
    inbox.expect_exactly_once(&first).await;
    consumer.shutdown().await;
    let rest = produce(&producer, "east", &topic, 30, 30).await;
    let mut all_carried = carried(&first);
    all_carried.extend(carried(&rest));
    expect_held(west, &topic, &all_carried).await;
    let offsets_arrived = offsets_carried(west, &topic, &group, first.len() as i64).await;
    assert!(offsets_arrived, "the group's offsets never reached west");
    let inbox = Inbox::new();
    let mut consumer = consume(west, &group, &topic, &inbox).await;
    inbox.expect_exactly_once(&carried(&rest)).await;
    consumer.shutdown().await;
    // A new group in north receives every carried message once.
    let inbox = Inbox::new();
    let mut consumer = consume(north, &unique("north-group"), &topic, &inbox).await;
    inbox.expect_exactly_once(&all_carried).await;
    consumer.shutdown().await;
}

/// Send one delayed message (delay level `level`) from `producer`.
async fn produce_delayed(producer: &DefaultMQProducer, topic: &str, body: &str, level: i32) {
    let msg = rocketmq_model::common::message::message_single::Message::builder()
        .topic(topic)
        .tags("Tag0")
        .key(format!("key-{body}"))
        .body_slice(body.as_bytes())
        .delay_level(level)
        .build_unchecked();
    let r = producer
        .send(msg)
        .await
        .unwrap_or_else(|e| panic!("send {body}: {}", support::describe(&e)))
        .expect("a sync send returns a result");
    assert_eq!(r.send_status, SendStatus::SendOk, "status of {body}");
}

/// How many messages of `topic` in `region` have this body.
async fn held(region: &Region, topic: &str, body: &str) -> usize {
    region
        .read_all(topic)
        .await
        .iter()
        .filter(|m| m.body.as_ref() == body.as_bytes())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delayed_message_is_delivered_once_in_every_region_even_when_its_region_is_down() {
    let topic = unique("delayed");
    // Level 1: 1 s; level 4: 6 s. Another region's delayed message is
    // delivered 2 s after its time if its own delivery has not arrived.
    let conf = "messageDelayLevel=1s 2s 3s 6s 10s\ndelayTakeoverGraceMs=2000";
    let (_dir, east, west, _relays) = two_way(&topic, conf, "");
    let pe = start_producer(&east.namesrv()).await;

    // Both regions up: east delivers, west takes east's delivery and does
    // not deliver its copy of the schedule again.
    produce_delayed(&pe, &topic, "east-on-time", 1).await;
    for r in [&east, &west] {
        let one = within(Duration::from_secs(30), || async {
            held(r, &topic, "east-on-time").await == 1
        })
        .await;
        assert!(one, "east-on-time not delivered in {}", r.name);
    }

    // East goes down after scheduling a message (the schedule record has
    // reached west): west delivers it once its time and the grace pass.
    let mut east = east;
    produce_delayed(&pe, &topic, "east-while-down", 4).await;
    let schedule_copied = within(Duration::from_secs(10), || async {
        west.read_all("SCHEDULE_TOPIC_XXXX")
            .await
            .iter()
            .any(|m| m.body.as_ref() == b"east-while-down")
    })
    .await;
    assert!(schedule_copied, "the schedule record never reached west");
    east.group.kill9(0);
    let delivered = within(Duration::from_secs(30), || async {
        held(&west, &topic, "east-while-down").await == 1
    })
    .await;
    assert!(delivered, "west never delivered east's delayed message");
    let inbox = Inbox::new();
    let mut consumer = consume(&west, &unique("west-group"), &topic, &inbox).await;
    inbox
        .expect_exactly_once(&["east-on-time".to_string(), "east-while-down".to_string()])
        .await;
    consumer.shutdown().await;

    // East comes back: its own delivery of the same message (its cursor
    // is still before it) and west's meet; each region keeps one.
    east.group.start_broker(0);
    let settled = within(Duration::from_secs(30), || async {
        held(&east, &topic, "east-while-down").await == 1
    })
    .await;
    assert!(settled, "east does not hold east-while-down once");
    tokio::time::sleep(Duration::from_secs(4)).await;
    for r in [&east, &west] {
        for body in ["east-on-time", "east-while-down"] {
            assert_eq!(held(r, &topic, body).await, 1, "{body} in {}", r.name);
        }
    }
    let inbox = Inbox::new();
    let mut consumer = consume(&east, &unique("east-group"), &topic, &inbox).await;
    inbox
        .expect_exactly_once(&["east-on-time".to_string(), "east-while-down".to_string()])
        .await;
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_topics_and_more_queues_reach_the_target_without_a_restart() {
    let prefix = unique("grow");
    let first = format!("{prefix}-a");
    let east = Region::start("east", "");
    let west = Region::start("west", "");
    east.create_topic(&first, 2);
    let dir = tempfile::tempdir().expect("temp dir");
    // A pattern: topics created later are relayed too. West has none of
    // them; the relay creates them there.
    let _relay = Relay::start(dir.path(), &east, &west, &format!("/{prefix}-.*/"), "");
    let producer = start_producer(&east.namesrv()).await;
    let mut sent_a = produce(&producer, "east", &first, 0, 10).await;
    expect_held(&west, &first, &sent_a).await;

    // A second topic appears in the source, and the first one grows from
    // two queues to four.
    let second = format!("{prefix}-b");
    east.create_topic(&second, 2);
    east.create_topic(&first, 4);
    let routed = within(Duration::from_secs(20), || async {
        meridian_client::Admin::new(&east.namesrv())
            .route(&first)
            .await
            .ok()
            .flatten()
            .is_some_and(|r| r.queue_datas.iter().all(|q| q.write_queue_nums == 4))
    })
    .await;
    assert!(routed, "the first topic never showed four queues");
    let producer_b = start_producer(&east.namesrv()).await;
    let sent_b = produce(&producer_b, "east", &second, 0, 10).await;
    // A fresh producer learns the four queues at once.
    let producer_a = start_producer(&east.namesrv()).await;
    sent_a.extend(produce(&producer_a, "east", &first, 10, 20).await);
    expect_held(&west, &second, &sent_b).await;
    expect_held(&west, &first, &sent_a).await;
    // West's copies cover all four of east's queues.
    let configs = meridian_client::Admin::new(&west.namesrv())
        .all_topic_config(&west.broker())
        .await
        .expect("west's topics");
    let copies = meridian_protocol::origin::copy_queues(&configs[&first].attributes);
    assert_eq!(copies.len(), 4, "west's copies of {first}: {copies:?}");
}
