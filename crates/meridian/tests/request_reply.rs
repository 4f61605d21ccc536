//! RocketMQ's request-reply with `rocketmq-client-rust` against the real
//! `meridian` binary: a requester's `producer.request_with_callback(...)`
//! is answered by a responder that builds its reply with the client's own
//! `MessageUtil::create_reply_message` and sends it (SEND_REPLY_MESSAGE);
//! the broker pushes it to the requester (PUSH_REPLY_MESSAGE_TO_CLIENT).
//! The same with the reply sent as SEND_REPLY_MESSAGE_V2 is
//! `request_reply_v2.rs`.

mod support;

use rocketmq_client_rust::MessageUtil;
use rocketmq_model::common::message::message_accessor::MessageAccessor;

use support::reply::{each_request_gets_its_reply, producer_with_instance, Responder};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_gets_its_own_reply() {
    let (opts, metrics_port) = support::metrics::exported(ClusterOpts::new());
    let cluster = Cluster::separate(opts);
    let ns = cluster.namesrv_addr();
    let topic = unique("Request");
    cluster.create_topic(&topic, 2);
    let responder = Responder::start(&ns, &topic).await;
    let mut requester = producer_with_instance(&ns).await;
    wait_for_route(&mut requester, &topic, 2).await;
    each_request_gets_its_reply(&mut requester, &topic, 5, || cluster.logs()).await;
    let (replies, _) = support::metrics::answered_eventually(metrics_port, 324, (5, 0)).await;
    assert_eq!(replies, (5, 0), "SEND_REPLY_MESSAGE (324) answers");

    // A reply for a requester that is not connected is refused, not
    // dropped silently.
    let mut orphan = message(&topic, "TagQ", "orphan", "orphan", &[]);
    for (name, value) in [
        ("CLUSTER", "DefaultCluster"),
        ("REPLY_TO_CLIENT", "192.0.2.9@nobody"),
        ("CORRELATION_ID", "no-such-request"),
    ] {
        MessageAccessor::put_property(&mut orphan, name.into(), value.into());
    }
    let reply = MessageUtil::create_reply_message(&orphan, b"unheard").expect("reply");
    let mut other = start_producer(&ns).await;
    let refused = other.send(reply).await;
    assert!(
        refused.is_err(),
        "a reply nobody waits for is refused: {refused:?}"
    );

    other.shutdown().await;
    requester.shutdown().await;
    responder.stop().await;
}
