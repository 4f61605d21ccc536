//! RocketMQ's request-reply with `rocketmq-client-rust`: a responder (a
//! push consumer that answers each request with the client's own
//! `MessageUtil::create_reply_message`, sent by a producer) and a
//! requester that checks each request gets its own reply. Which request
//! code carries the replies (SEND_REPLY_MESSAGE or its V2 form) is the
//! client's `org.apache.rocketmq.client.sendSmartMsg` setting.

use std::time::Duration;

use rocketmq_client_rust::ClientConfig;
use rocketmq_client_rust::ConsumeConcurrentlyContext;
use rocketmq_client_rust::ConsumeConcurrentlyStatus;
use rocketmq_client_rust::DefaultMQProducer;
use rocketmq_client_rust::MQPushConsumer;
use rocketmq_client_rust::MessageUtil;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::MessageTrait;

use super::*;

/// A started producer with an instance name of its own (a requester is
/// addressed by its client id, which the instance name is part of).
pub async fn producer_with_instance(ns: &str) -> DefaultMQProducer {
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

pub fn body_of(msg: &dyn MessageTrait) -> String {
    msg.get_body()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// The responder running: a consumer of `topic` hands each request to a
/// task that replies with the request's body upper-cased. Stop it with
/// [`Responder::stop`].
pub struct Responder {
    consumer: rocketmq_client_rust::DefaultMQPushConsumer,
    replier: tokio::task::JoinHandle<usize>,
}

impl Responder {
    pub async fn start(ns: &str, topic: &str) -> Responder {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<MessageExt>();
        let mut consumer = push_consumer(ns, &unique("cg")).build();
        consumer.subscribe(topic, "*").await.expect("subscribe");
        consumer.register_message_listener_concurrently(
            move |msgs: &[&MessageExt], _: &ConsumeConcurrentlyContext| {
                for m in msgs {
                    let _ = tx.send((*m).clone());
                }
                Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
            },
        );
        consumer.start().await.expect("responder starts");
        let mut reply_producer = start_producer(ns).await;
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
        Responder { consumer, replier }
    }

    pub async fn stop(mut self) {
        self.consumer.shutdown().await;
        self.replier.abort();
    }
}

/// Send `count` requests to `topic` from `requester`, one at a time, and
/// check each gets its own reply (`logs` says what the servers printed,
/// for a failure).
pub async fn each_request_gets_its_reply(
    requester: &mut DefaultMQProducer,
    topic: &str,
    count: usize,
    logs: impl Fn() -> String,
) {
    for i in 0..count {
        let body = format!("question-{i}");
        let msg = message(topic, "TagQ", &format!("k{i}"), &body, &[]);
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
        let reply = tokio::time::timeout(Duration::from_secs(20), rx)
            .await
            .unwrap_or_else(|_| panic!("request {i} gets no answer at all\n{}", logs()))
            .expect("the callback runs")
            .unwrap_or_else(|e| panic!("request {i} gets a reply: {e}\n{}", logs()));
        assert_eq!(reply, body.to_uppercase(), "the reply to {body}");
    }
}
