//! RocketMQ's request-reply with `rocketmq-client-rust` against the real
//! `meridian` binary: a requester's `producer.request_with_callback(...)`
//! is answered by
//! a responder that builds its reply with the client's own
//! `MessageUtil::create_reply_message` and sends it (SEND_REPLY_MESSAGE);
//! the broker pushes it to the requester (PUSH_REPLY_MESSAGE_TO_CLIENT).

mod support;

use rocketmq_client_rust::ClientConfig;
use rocketmq_client_rust::ConsumeConcurrentlyContext;
use rocketmq_client_rust::ConsumeConcurrentlyStatus;
use rocketmq_client_rust::DefaultMQProducer;
use rocketmq_client_rust::MQPushConsumer;
use rocketmq_client_rust::MessageUtil;
use rocketmq_model::common::message::message_accessor::MessageAccessor;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::MessageTrait;

use support::*;

async fn producer_with_instance(ns: &str) -> DefaultMQProducer {
    let mut config = ClientConfig::default();
    config.set_instance_name(unique("requester").into());
    let mut producer = DefaultMQProducer::builder(client_runtime("requester"))
        .client_config(config)
        .producer_group(unique("pg"))
        .name_server_addr(ns.to_owned())
        .send_msg_timeout(10_000)
        .build();
    producer.start().await.expect("requester starts");
    producer
}

fn body_of(msg: &dyn MessageTrait) -> String {
    msg.get_body()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_gets_its_own_reply() {
    let cluster = Cluster::dev(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let topic = unique("Request");
    cluster.create_topic(&topic, 2);

    // The responder: a consumer hands each request to a task that replies
    // with the request's body upper-cased.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<MessageExt>();
    let mut responder = push_consumer(&ns, &unique("cg")).build();
    responder.subscribe(&topic, "*").await.expect("subscribe");
    responder.register_message_listener_concurrently(
        move |msgs: &[&MessageExt], _: &ConsumeConcurrentlyContext| {
            for m in msgs {
                let _ = tx.send((*m).clone());
            }
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
        },
    );
    responder.start().await.expect("responder starts");
    let mut reply_producer = start_producer(&ns).await;
    let replier = tokio::spawn(async move {
        let mut replied = 0usize;
        while let Some(request) = rx.recv().await {
            let answer = body_of(&request.message).to_uppercase();
            let reply = MessageUtil::create_reply_message(&request.message, answer.as_bytes())
                .expect("the request carries CLUSTER, so a reply can be made");
            reply_producer.send(reply).await.expect("reply sent");
            replied += 1;
        }
        reply_producer.shutdown().await;
        replied
    });

    let mut requester = producer_with_instance(&ns).await;
    wait_for_route(&mut requester, &topic, 2).await;
    for i in 0..5 {
        let body = format!("question-{i}");
        let msg = message(&topic, "TagQ", &format!("k{i}"), &body, &[]);
        // The callback form of `request`: rocketmq-client-rust 1.0.0's
        // blocking `request()` wakes its waiter with `notify_waiters`, so a
        // reply that arrives before the requester starts waiting (the
        // broker pushes it as soon as the responder sends it, which on a
        // loaded machine can be before the send's own answer is handled)
        // is stored but never seen, and the request times out. The
        // callback runs when the reply arrives, whenever that is.
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<String, String>>();
        let tx = std::sync::Mutex::new(Some(tx));
        requester
            .request_with_callback(
                msg,
                move |reply: Option<&dyn MessageTrait>,
                      err: Option<&rocketmq_client_rust::ClientError>| {
                    // The client also calls back when the send itself is
                    // answered, with neither a reply nor an error if the
                    // reply has not come yet: wait for the call that has one.
                    let answer = match (reply, err) {
                        (Some(m), _) => Ok(body_of(m)),
                        (None, Some(e)) => Err(e.to_string()),
                        (None, None) => return,
                    };
                    if let Some(tx) = tx.lock().unwrap().take() {
                        let _ = tx.send(answer);
                    }
                },
                15_000,
            )
            .await
            .unwrap_or_else(|e| panic!("request {i} is sent: {e}"));
        let reply = tokio::time::timeout(std::time::Duration::from_secs(20), rx)
            .await
            .unwrap_or_else(|_| panic!("request {i} gets no answer at all\n{}", cluster.logs()))
            .expect("the callback runs")
            .unwrap_or_else(|e| panic!("request {i} gets a reply: {e}\n{}", cluster.logs()));
        assert_eq!(reply, body.to_uppercase(), "the reply to {body}");
    }

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
    responder.shutdown().await;
    replier.abort();
}
