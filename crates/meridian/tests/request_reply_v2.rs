//! Request-reply with the reply sent as SEND_REPLY_MESSAGE_V2 (325), the
//! short-header form Java clients use by default: `rocketmq-client-rust`
//! sends it when `org.apache.rocketmq.client.sendSmartMsg=true` is in its
//! process's environment when it first sends. That setting holds for the
//! whole process, so this test has a binary of its own (the
//! SEND_REPLY_MESSAGE form is `request_reply.rs`). The broker's metrics
//! show which code carried the replies.

mod support;

use support::reply::{each_request_gets_its_reply, producer_with_instance, Responder};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_gets_its_own_reply_sent_as_v2() {
    // Before any client of this process sends anything (the client reads
    // it once). Edition 2021: no other thread reads the environment yet.
    std::env::set_var("org.apache.rocketmq.client.sendSmartMsg", "true");
    let (opts, metrics_port) = support::metrics::exported(ClusterOpts::new());
    let cluster = Cluster::separate(opts);
    let ns = cluster.namesrv_addr();
    let topic = unique("RequestV2");
    cluster.create_topic(&topic, 2);
    let responder = Responder::start(&ns, &topic).await;
    let mut requester = producer_with_instance(&ns).await;
    wait_for_route(&mut requester, &topic, 2).await;
    each_request_gets_its_reply(&mut requester, &topic, 5, || cluster.logs()).await;

    let (replies, metrics) = support::metrics::answered_eventually(metrics_port, 325, (5, 0)).await;
    assert_eq!(replies, (5, 0), "SEND_REPLY_MESSAGE_V2 (325) answers");
    assert_eq!(
        support::metrics::answered(&metrics, 324),
        (0, 0),
        "no reply went as SEND_REPLY_MESSAGE"
    );
    // The requests themselves went in the V2 form too.
    assert!(support::metrics::answered(&metrics, 310).0 >= 5);
    requester.shutdown().await;
    responder.stop().await;
}
