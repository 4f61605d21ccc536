//! Administrative requests to name servers and brokers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use meridian_protocol::body::{
    ClusterInfo, ConsumeStats, KVTable, TopicConfig, TopicList, TopicRouteData, TopicStatsTable,
};
use meridian_protocol::codes::{request_code as rc, response_code};
use meridian_protocol::header::admin::{
    CreateTopicRequestHeader, DeleteTopicRequestHeader, GetConsumeStatsRequestHeader,
    GetTopicStatsInfoRequestHeader, RaftTransferLeaderRequestHeader,
    RaftTransferLeaderResponseHeader,
};
use meridian_protocol::header::consumer::ResetOffsetRequestHeader;
use meridian_protocol::header::namesrv::{
    DeleteTopicFromNamesrvRequestHeader, GetRouteInfoRequestHeader,
};
use meridian_protocol::header::pull::PullMessageResponseHeader;
use meridian_protocol::header::query::{QueryMessageRequestHeader, ViewMessageRequestHeader};
use meridian_protocol::message::{decode_record, decode_records, MessageExt};
use meridian_protocol::RemotingCommand;
use meridian_remoting::RemotingClient;

use crate::ClientError;

/// How a Raft member answered a leadership transfer
/// ([`Admin::raft_transfer_leader`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaftTransfer {
    /// The target leads now.
    Done {
        /// `dLegerGroup`.
        group: String,
        /// The new leader (`n2`).
        leader_id: String,
        /// The term it leads in, as the old leader saw it.
        term: i64,
    },
    /// The member asked does not lead; nothing was done. `leader_id` is
    /// the leader it knows of (ask that member), `None` during an election.
    NotLeader {
        group: String,
        leader_id: Option<String>,
        /// The member's explanation.
        remark: String,
    },
}

/// A Raft member that does not lead, answering a leader-only request
/// (SERVICE_NOT_AVAILABLE with the leader it knows of).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotLeader {
    pub group: String,
    /// Ask this member instead; `None` during an election.
    pub leader_id: Option<String>,
    /// The member's explanation.
    pub remark: String,
}

impl NotLeader {
    /// Read it from an answer; `None` when the answer is not a Raft
    /// member's refusal (a broker shutting down answers
    /// SERVICE_NOT_AVAILABLE too, without naming a group).
    fn from_answer(what: &str, r: &RemotingCommand) -> Result<Option<NotLeader>> {
        if r.code != response_code::SERVICE_NOT_AVAILABLE {
            return Ok(None);
        }
        let h = RaftTransferLeaderResponseHeader::parse(r).map_err(|e| ClientError::Decode {
            what: format!("{what} answer"),
            detail: e.to_string(),
        })?;
        let group = h.raft_group.unwrap_or_default();
        Ok((!group.is_empty()).then(|| NotLeader {
            group,
            leader_id: h.leader_id,
            remark: r.remark.clone().unwrap_or_default(),
        }))
    }
}

pub struct Admin {
    namesrv: Vec<String>,
    remoting: RemotingClient,
    timeout: Duration,
}

type Result<T> = std::result::Result<T, ClientError>;

impl Admin {
    /// An admin client for the name servers in `namesrv` (`;`-separated).
    pub fn new(namesrv: &str) -> Admin {
        Admin {
            namesrv: namesrv
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            remoting: RemotingClient::new(),
            timeout: Duration::from_secs(10),
        }
    }

    /// Give up on a request after `timeout` (10 s unless set).
    pub fn with_timeout(mut self, timeout: Duration) -> Admin {
        self.timeout = timeout;
        self
    }

    /// Sign every request with `credentials` (brokers with `aclEnable=true`).
    pub fn with_credentials(
        self,
        credentials: Option<meridian_remoting::acl::Credentials>,
    ) -> Admin {
        self.with_security(credentials, Default::default())
    }

    /// Sign with `credentials` and connect with `connector` (TLS).
    pub fn with_security(
        mut self,
        credentials: Option<meridian_remoting::acl::Credentials>,
        connector: meridian_remoting::tls::Connector,
    ) -> Admin {
        self.remoting = RemotingClient::new()
            .with_credentials(credentials)
            .with_connector(connector);
        self
    }

    /// Send to the first name server that answers.
    async fn call_namesrv(&self, req: RemotingCommand) -> Result<RemotingCommand> {
        let mut last = None;
        for addr in &self.namesrv {
            match self.remoting.invoke(addr, req.clone(), self.timeout).await {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => e.into(),
            None => ClientError::Other("no name server address given (use -n host:port)".into()),
        })
    }

    /// Send to every name server; fails only if none accepted.
    async fn call_all_namesrv(&self, what: &str, req: RemotingCommand) -> Result<()> {
        let mut ok = false;
        let mut last = None;
        for addr in &self.namesrv {
            match self.remoting.invoke(addr, req.clone(), self.timeout).await {
                Ok(r) if r.code == response_code::SUCCESS => ok = true,
                Ok(r) => last = Some(ClientError::broker(what, &r)),
                Err(e) => last = Some(e.into()),
            }
        }
        if ok {
            Ok(())
        } else {
            Err(last.unwrap_or_else(|| ClientError::Other("no name server".into())))
        }
    }

    pub async fn call(&self, addr: &str, req: RemotingCommand) -> Result<RemotingCommand> {
        Ok(self.remoting.invoke(addr, req, self.timeout).await?)
    }

    fn expect_ok(what: &str, r: RemotingCommand) -> Result<RemotingCommand> {
        if r.code == response_code::SUCCESS {
            Ok(r)
        } else {
            Err(ClientError::broker(what, &r))
        }
    }

    fn json<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T> {
        serde_json::from_slice(body).map_err(|e| ClientError::Decode {
            what: what.to_string(),
            detail: e.to_string(),
        })
    }

    /// Every topic config of the broker at `addr` (GET_ALL_TOPIC_CONFIG).
    pub async fn all_topic_config(
        &self,
        addr: &str,
    ) -> Result<std::collections::HashMap<String, TopicConfig>> {
        let r = self
            .call(addr, RemotingCommand::request(rc::GET_ALL_TOPIC_CONFIG))
            .await?;
        let r = Self::expect_ok("getAllTopicConfig", r)?;
        let w: meridian_protocol::body::TopicConfigSerializeWrapper =
            meridian_protocol::body::decode_body(&r.body).map_err(|e| ClientError::Decode {
                what: "topic configs".into(),
                detail: e.to_string(),
            })?;
        Ok(w.topic_config_table)
    }

    /// The route of `topic`, or `None` when no broker serves it.
    pub async fn route(&self, topic: &str) -> Result<Option<TopicRouteData>> {
        self.route_with(topic, false).await
    }

    /// The route of `topic` among the name servers' own region's brokers,
    /// even while that region's clients are routed to another region (a
    /// relay reads its source region, wherever clients go).
    pub async fn own_route(&self, topic: &str) -> Result<Option<TopicRouteData>> {
        self.route_with(topic, true).await
    }

    async fn route_with(&self, topic: &str, own: bool) -> Result<Option<TopicRouteData>> {
        let mut req = RemotingCommand::request(rc::GET_ROUTEINFO_BY_TOPIC);
        GetRouteInfoRequestHeader {
            topic: topic.to_string(),
        }
        .write(&mut req);
        if own {
            req.set_ext(meridian_protocol::origin::OWN_REGION_ROUTE_EXT, "true");
        }
        let r = self.call_namesrv(req).await?;
        if r.code == response_code::TOPIC_NOT_EXIST {
            return Ok(None);
        }
        let r = Self::expect_ok("topic route", r)?;
        Ok(Some(Self::json("topic route", &r.body)?))
    }

    pub async fn cluster_info(&self) -> Result<ClusterInfo> {
        let r = self
            .call_namesrv(RemotingCommand::request(rc::GET_BROKER_CLUSTER_INFO))
            .await?;
        let r = Self::expect_ok("cluster info", r)?;
        Self::json("cluster info", &r.body)
    }

    pub async fn topic_list(&self) -> Result<BTreeSet<String>> {
        let r = self
            .call_namesrv(RemotingCommand::request(
                rc::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
            ))
            .await?;
        let r = Self::expect_ok("topic list", r)?;
        let list: TopicList = Self::json("topic list", &r.body)?;
        Ok(list.topic_list)
    }

    /// `(brokerName, master address)` of every broker group in `cluster`.
    pub async fn master_addrs(&self, cluster: &str) -> Result<Vec<(String, String)>> {
        let info = self.cluster_info().await?;
        let names = info.cluster_addr_table.get(cluster).ok_or_else(|| {
            ClientError::Other(format!(
                "cluster `{cluster}` is not known to the name server (see `clusterList`)"
            ))
        })?;
        let mut out = Vec::new();
        for name in names {
            if let Some(addr) = info
                .broker_addr_table
                .get(name)
                .and_then(|b| b.broker_addrs.get(&0))
            {
                out.push((name.clone(), addr.clone()));
            }
        }
        Ok(out)
    }

    /// Master addresses of the brokers serving `topic`.
    pub async fn topic_masters(&self, topic: &str) -> Result<Vec<(String, String)>> {
        let route = self.route(topic).await?.ok_or_else(|| {
            ClientError::Other(format!("topic `{topic}` has no route (does it exist?)"))
        })?;
        Ok(route
            .broker_datas
            .iter()
            .filter_map(|b| {
                b.broker_addrs
                    .get(&0)
                    .map(|a| (b.broker_name.clone(), a.clone()))
            })
            .collect())
    }

    pub async fn update_topic(&self, addr: &str, cfg: &TopicConfig) -> Result<()> {
        let mut req = RemotingCommand::request(rc::UPDATE_AND_CREATE_TOPIC);
        CreateTopicRequestHeader {
            topic: cfg.topic_name.clone(),
            default_topic: "TBW102".into(),
            read_queue_nums: cfg.read_queue_nums,
            write_queue_nums: cfg.write_queue_nums,
            perm: cfg.perm,
            topic_filter_type: cfg.topic_filter_type.clone(),
            topic_sys_flag: cfg.topic_sys_flag,
            order: cfg.order,
            ..Default::default()
        }
        .write(&mut req);
        let r = self.call(addr, req).await?;
        Self::expect_ok("updateTopic", r).map(|_| ())
    }

    pub async fn delete_topic_in_broker(&self, addr: &str, topic: &str) -> Result<()> {
        let mut req = RemotingCommand::request(rc::DELETE_TOPIC_IN_BROKER);
        DeleteTopicRequestHeader {
            topic: topic.to_string(),
        }
        .write(&mut req);
        let r = self.call(addr, req).await?;
        Self::expect_ok("deleteTopic (broker)", r).map(|_| ())
    }

    pub async fn delete_topic_in_namesrv(&self, topic: &str, cluster: Option<&str>) -> Result<()> {
        let mut req = RemotingCommand::request(rc::DELETE_TOPIC_IN_NAMESRV);
        DeleteTopicFromNamesrvRequestHeader {
            topic: topic.to_string(),
            cluster_name: cluster.map(str::to_string),
        }
        .write(&mut req);
        self.call_all_namesrv("deleteTopic (name server)", req)
            .await
    }

    pub async fn topic_stats(&self, addr: &str, topic: &str) -> Result<TopicStatsTable> {
        let mut req = RemotingCommand::request(rc::GET_TOPIC_STATS_INFO);
        GetTopicStatsInfoRequestHeader {
            topic: topic.to_string(),
        }
        .write(&mut req);
        let r = Self::expect_ok("topicStatus", self.call(addr, req).await?)?;
        TopicStatsTable::from_json_bytes(&r.body).map_err(|e| ClientError::Decode {
            what: "topic stats".into(),
            detail: e.to_string(),
        })
    }

    pub async fn consume_stats(
        &self,
        addr: &str,
        group: &str,
        topic: Option<&str>,
    ) -> Result<ConsumeStats> {
        let mut req = RemotingCommand::request(rc::GET_CONSUME_STATS);
        GetConsumeStatsRequestHeader {
            consumer_group: group.to_string(),
            topic: topic.map(str::to_string),
        }
        .write(&mut req);
        let r = Self::expect_ok("consumerProgress", self.call(addr, req).await?)?;
        ConsumeStats::from_json_bytes(&r.body).map_err(|e| ClientError::Decode {
            what: "consume stats".into(),
            detail: e.to_string(),
        })
    }

    /// The message stored at `offset` on the broker at `addr`.
    pub async fn view_message(&self, addr: &str, offset: i64) -> Result<MessageExt> {
        let mut req = RemotingCommand::request(rc::VIEW_MESSAGE_BY_ID);
        ViewMessageRequestHeader { offset }.write(&mut req);
        let r = Self::expect_ok("queryMsgById", self.call(addr, req).await?)?;
        decode_record(&r.body)
            .map(|(m, _)| m)
            .map_err(|e| ClientError::Decode {
                what: "message".into(),
                detail: e.to_string(),
            })
    }

    /// Messages of `topic` with `key` (a KEYS entry or the UNIQ_KEY) on the
    /// broker at `addr`.
    pub async fn query_message(
        &self,
        addr: &str,
        topic: &str,
        key: &str,
        max_num: i32,
        unique: bool,
    ) -> Result<Vec<MessageExt>> {
        let mut req = RemotingCommand::request(rc::QUERY_MESSAGE);
        QueryMessageRequestHeader {
            topic: topic.to_string(),
            key: key.to_string(),
            max_num,
            begin_timestamp: 0,
            end_timestamp: i64::MAX,
        }
        .write(&mut req);
        if unique {
            req.set_ext("_UNIQUE_KEY_QUERY", "true");
        }
        let r = self.call(addr, req).await?;
        if r.code == response_code::QUERY_NOT_FOUND {
            return Ok(Vec::new());
        }
        let r = Self::expect_ok("queryMsgByKey", r)?;
        Ok(decode_records(&r.body))
    }

    /// Commit `group`'s consumer offset of one queue (UPDATE_CONSUMER_OFFSET,
    /// as a consumer's offset store sends it).
    pub async fn update_consumer_offset(
        &self,
        addr: &str,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
    ) -> Result<()> {
        let mut req = RemotingCommand::request(rc::UPDATE_CONSUMER_OFFSET);
        meridian_protocol::header::offset::UpdateConsumerOffsetRequestHeader {
            consumer_group: group.to_string(),
            topic: topic.to_string(),
            queue_id,
            commit_offset: offset,
        }
        .write(&mut req);
        Self::expect_ok("updateConsumerOffset", self.call(addr, req).await?)?;
        Ok(())
    }

    /// `group`'s committed offset of one queue; `None` if it has none.
    pub async fn query_consumer_offset(
        &self,
        addr: &str,
        group: &str,
        topic: &str,
        queue_id: i32,
    ) -> Result<Option<i64>> {
        let mut req = RemotingCommand::request(rc::QUERY_CONSUMER_OFFSET);
        meridian_protocol::header::offset::QueryConsumerOffsetRequestHeader {
            consumer_group: group.to_string(),
            topic: topic.to_string(),
            queue_id,
            set_zero_if_not_found: Some(false),
        }
        .write(&mut req);
        let r = self.call(addr, req).await?;
        if r.code == response_code::QUERY_NOT_FOUND {
            return Ok(None);
        }
        let r = Self::expect_ok("queryConsumerOffset", r)?;
        r.ext("offset")
            .and_then(|v| v.parse().ok())
            .map(Some)
            .ok_or_else(|| ClientError::Decode {
                what: "queryConsumerOffset".into(),
                detail: "no offset in the answer".into(),
            })
    }

    /// Reset `group`'s offsets on `topic` to the first message stored at or
    /// after `timestamp` (ms); returns the new offsets.
    pub async fn reset_offset(
        &self,
        addr: &str,
        topic: &str,
        group: &str,
        timestamp: i64,
        force: bool,
    ) -> Result<Vec<(i32, i64)>> {
        let mut req = RemotingCommand::request(rc::INVOKE_BROKER_TO_RESET_OFFSET);
        ResetOffsetRequestHeader {
            topic: topic.to_string(),
            group: group.to_string(),
            timestamp,
            is_force: force,
        }
        .write(&mut req);
        let r = Self::expect_ok("resetOffsetByTime", self.call(addr, req).await?)?;
        let body =
            meridian_protocol::body::ResetOffsetBody::from_json_bytes(&r.body).map_err(|e| {
                ClientError::Decode {
                    what: "reset offset".into(),
                    detail: e.to_string(),
                }
            })?;
        let mut v: Vec<(i32, i64)> = body
            .offset_table
            .iter()
            .map(|(mq, off)| (mq.queue_id, *off))
            .collect();
        v.sort();
        Ok(v)
    }

    /// One pull of up to `max` messages of a queue from `offset`, without
    /// waiting: returns the response code, the next offset to pull from,
    /// and the messages (decoded from the stored records), a copy queue's
    /// placeholders included (`MERIDIAN_FILTERED`).
    pub async fn pull(
        &self,
        addr: &str,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
        max: i32,
    ) -> Result<(i32, i64, Vec<MessageExt>)> {
        let mut req = crate::consumer::Pull {
            group,
            topic,
            broker_name: "",
            queue_id,
            offset,
            max_msgs: max,
            suspend: None,
        }
        .request();
        req.set_ext(meridian_protocol::origin::PULL_PLACEHOLDERS_EXT, "true");
        let r = self.call(addr, req).await?;
        // An error answer (no such topic yet, no permission) has no pull
        // header: say what the broker said.
        let Ok(h) = PullMessageResponseHeader::parse(&r) else {
            return Err(ClientError::broker("pull", &r));
        };
        let mut msgs = Vec::new();
        if r.code == response_code::SUCCESS {
            let mut rest: &[u8] = &r.body;
            while !rest.is_empty() {
                let (m, used) = decode_record(rest).map_err(|e| ClientError::Decode {
                    what: "pulled record".into(),
                    detail: e.to_string(),
                })?;
                msgs.push(m);
                rest = &rest[used..];
            }
        }
        Ok((r.code, h.next_begin_offset, msgs))
    }

    /// Ask the Raft member at `addr` to hand its group's leadership to
    /// member `to` (`n2`): RAFT_TRANSFER_LEADER, a Meridian request code.
    /// The leader answers once `to` leads (a few seconds at most); a member
    /// that does not lead answers [`RaftTransfer::NotLeader`]. A broker
    /// that is not a Raft member, an unknown `to`, or a transfer that did
    /// not complete are errors carrying the broker's reason.
    pub async fn raft_transfer_leader(&self, addr: &str, to: &str) -> Result<RaftTransfer> {
        let mut req = RemotingCommand::request(rc::RAFT_TRANSFER_LEADER);
        RaftTransferLeaderRequestHeader {
            to_node_id: to.to_string(),
        }
        .write(&mut req);
        let r = self.call(addr, req).await?;
        if let Some(n) = NotLeader::from_answer("transferLeader", &r)? {
            return Ok(RaftTransfer::NotLeader {
                group: n.group,
                leader_id: n.leader_id,
                remark: n.remark,
            });
        }
        if r.code != response_code::SUCCESS {
            return Err(ClientError::broker("transferLeader", &r));
        }
        let h = RaftTransferLeaderResponseHeader::parse(&r).map_err(|e| ClientError::Decode {
            what: "transferLeader answer".into(),
            detail: e.to_string(),
        })?;
        Ok(RaftTransfer::Done {
            group: h.raft_group.unwrap_or_default(),
            leader_id: h.leader_id.unwrap_or_else(|| to.to_string()),
            term: h.term.unwrap_or(-1),
        })
    }

    /// RAFT_CHANGE_MEMBERSHIP to the member at `addr`: `action` is
    /// addPeer, addLearner, promote or remove. Done: the voters after it
    /// (`n0,n1,…`); a member that does not lead answers the leader-only
    /// actions with [`NotLeader`].
    pub async fn raft_change_membership(
        &self,
        addr: &str,
        action: &str,
        node_id: &str,
        node_addr: Option<&str>,
    ) -> Result<std::result::Result<String, NotLeader>> {
        let mut req = RemotingCommand::request(rc::RAFT_CHANGE_MEMBERSHIP);
        meridian_protocol::header::admin::RaftChangeMembershipRequestHeader {
            action: action.to_string(),
            node_id: node_id.to_string(),
            addr: node_addr.map(str::to_string),
        }
        .write(&mut req);
        let r = self.call(addr, req).await?;
        if let Some(n) = NotLeader::from_answer(action, &r)? {
            return Ok(Err(n));
        }
        let r = Self::expect_ok(action, r)?;
        Ok(Ok(r.ext("voters").unwrap_or_default().to_string()))
    }

    pub async fn runtime_info(&self, addr: &str) -> Result<BTreeMap<String, String>> {
        let r = self
            .call(addr, RemotingCommand::request(rc::GET_BROKER_RUNTIME_INFO))
            .await?;
        let r = Self::expect_ok("brokerStatus", r)?;
        let kv: KVTable = Self::json("broker runtime info", &r.body)?;
        Ok(kv.table.into_iter().collect())
    }

    /// The name server addresses this admin talks to.
    pub fn namesrv_addrs(&self) -> &[String] {
        &self.namesrv
    }

    /// WIPE_WRITE_PERM_OF_BROKER (`write == false`) or
    /// ADD_WRITE_PERM_OF_BROKER on the name server at `namesrv`: how many
    /// of the broker group's topics it changed.
    pub async fn set_write_perm(
        &self,
        namesrv: &str,
        broker_name: &str,
        write: bool,
    ) -> Result<i32> {
        use meridian_protocol::header::namesrv::{
            AddWritePermOfBrokerRequestHeader, AddWritePermOfBrokerResponseHeader,
            WipeWritePermOfBrokerRequestHeader, WipeWritePermOfBrokerResponseHeader,
        };
        let (what, req) = if write {
            let mut req = RemotingCommand::request(rc::ADD_WRITE_PERM_OF_BROKER);
            AddWritePermOfBrokerRequestHeader {
                broker_name: broker_name.to_string(),
            }
            .write(&mut req);
            ("addWritePerm", req)
        } else {
            let mut req = RemotingCommand::request(rc::WIPE_WRITE_PERM_OF_BROKER);
            WipeWritePermOfBrokerRequestHeader {
                broker_name: broker_name.to_string(),
            }
            .write(&mut req);
            ("wipeWritePerm", req)
        };
        let r = Self::expect_ok(what, self.call(namesrv, req).await?)?;
        let decode = |e: meridian_protocol::ProtocolError| ClientError::Decode {
            what: what.to_string(),
            detail: e.to_string(),
        };
        Ok(if write {
            AddWritePermOfBrokerResponseHeader::parse(&r)
                .map_err(decode)?
                .add_topic_count
        } else {
            WipeWritePermOfBrokerResponseHeader::parse(&r)
                .map_err(decode)?
                .wipe_topic_count
        })
    }

    /// GET_BROKER_CONFIG: the broker's settings, `key=value`.
    pub async fn broker_config(&self, addr: &str) -> Result<BTreeMap<String, String>> {
        let r = self
            .call(addr, RemotingCommand::request(rc::GET_BROKER_CONFIG))
            .await?;
        let r = Self::expect_ok("getBrokerConfig", r)?;
        Ok(properties(&r.body))
    }

    /// UPDATE_BROKER_CONFIG with one `key=value`.
    pub async fn update_broker_config(&self, addr: &str, key: &str, value: &str) -> Result<()> {
        let req = RemotingCommand::request(rc::UPDATE_BROKER_CONFIG)
            .with_body(format!("{key}={value}\n").into_bytes());
        Self::expect_ok("updateBrokerConfig", self.call(addr, req).await?)?;
        Ok(())
    }

    /// GET_CONSUMER_CONNECTION_LIST: a consumer group's clients on `addr`.
    pub async fn consumer_connection(
        &self,
        addr: &str,
        group: &str,
    ) -> Result<meridian_protocol::body::ConsumerConnection> {
        let mut req = RemotingCommand::request(rc::GET_CONSUMER_CONNECTION_LIST);
        meridian_protocol::header::admin::GetConsumerConnectionListRequestHeader {
            consumer_group: group.to_string(),
        }
        .write(&mut req);
        let r = Self::expect_ok("consumerConnection", self.call(addr, req).await?)?;
        Self::json("consumer connections", &r.body)
    }

    /// GET_PRODUCER_CONNECTION_LIST: a producer group's clients on `addr`.
    pub async fn producer_connection(
        &self,
        addr: &str,
        group: &str,
    ) -> Result<meridian_protocol::body::ProducerConnection> {
        let mut req = RemotingCommand::request(rc::GET_PRODUCER_CONNECTION_LIST);
        meridian_protocol::header::admin::GetProducerConnectionListRequestHeader {
            producer_group: group.to_string(),
        }
        .write(&mut req);
        let r = Self::expect_ok("producerConnection", self.call(addr, req).await?)?;
        Self::json("producer connections", &r.body)
    }

    /// GET_MIN_OFFSET: the first offset still held in a queue.
    pub async fn min_offset(&self, addr: &str, topic: &str, queue_id: i32) -> Result<i64> {
        use meridian_protocol::header::offset::{
            GetMinOffsetRequestHeader, GetMinOffsetResponseHeader,
        };
        let mut req = RemotingCommand::request(rc::GET_MIN_OFFSET);
        GetMinOffsetRequestHeader {
            topic: topic.to_string(),
            queue_id,
        }
        .write(&mut req);
        let r = Self::expect_ok("getMinOffset", self.call(addr, req).await?)?;
        Ok(GetMinOffsetResponseHeader::parse(&r)
            .map_err(|e| ClientError::Decode {
                what: "getMinOffset".into(),
                detail: e.to_string(),
            })?
            .offset)
    }

    /// GET_CONSUMER_RUNNING_INFO through the broker at `addr`: the running
    /// info the consumer `client_id` of `group` reports (its JSON, as the
    /// client wrote it).
    pub async fn consumer_running_info(
        &self,
        addr: &str,
        group: &str,
        client_id: &str,
        jstack: bool,
    ) -> Result<Vec<u8>> {
        let mut req = RemotingCommand::request(rc::GET_CONSUMER_RUNNING_INFO);
        meridian_protocol::header::consumer::GetConsumerRunningInfoRequestHeader {
            consumer_group: group.to_string(),
            client_id: client_id.to_string(),
            jstack_enable: jstack,
        }
        .write(&mut req);
        let r = Self::expect_ok("consumerStatus", self.call(addr, req).await?)?;
        Ok(r.body.to_vec())
    }

    /// GET_NAMESRV_CONFIG of the name server at `namesrv`: its settings.
    pub async fn namesrv_config(&self, namesrv: &str) -> Result<BTreeMap<String, String>> {
        let r = self
            .call(namesrv, RemotingCommand::request(rc::GET_NAMESRV_CONFIG))
            .await?;
        let r = Self::expect_ok("getNamesrvConfig", r)?;
        Ok(properties(&r.body))
    }

    /// UPDATE_NAMESRV_CONFIG with one `key=value`.
    pub async fn update_namesrv_config(&self, namesrv: &str, key: &str, value: &str) -> Result<()> {
        let req = RemotingCommand::request(rc::UPDATE_NAMESRV_CONFIG)
            .with_body(format!("{key}={value}\n").into_bytes());
        Self::expect_ok("updateNamesrvConfig", self.call(namesrv, req).await?)?;
        Ok(())
    }

    /// GET_ALL_CONSUMER_OFFSET: every committed offset on `addr`, by
    /// `topic@group` and queue.
    pub async fn all_consumer_offsets(
        &self,
        addr: &str,
    ) -> Result<BTreeMap<String, BTreeMap<i32, i64>>> {
        let r = self
            .call(addr, RemotingCommand::request(rc::GET_ALL_CONSUMER_OFFSET))
            .await?;
        let r = Self::expect_ok("getAllConsumerOffset", r)?;
        #[derive(serde::Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct Offsets {
            offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
        }
        let o: Offsets = Self::json("consumer offsets", &r.body)?;
        Ok(o.offset_table)
    }

    /// GET_ALL_SUBSCRIPTIONGROUP_CONFIG: every consumer group's settings on `addr`.
    pub async fn subscription_groups(
        &self,
        addr: &str,
    ) -> Result<meridian_protocol::body::SubscriptionGroupWrapper> {
        let r = self
            .call(
                addr,
                RemotingCommand::request(rc::GET_ALL_SUBSCRIPTIONGROUP_CONFIG),
            )
            .await?;
        let r = Self::expect_ok("getAllSubscriptionGroup", r)?;
        Self::json("subscription groups", &r.body)
    }

    /// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP.
    pub async fn update_subscription_group(
        &self,
        addr: &str,
        cfg: &meridian_protocol::body::SubscriptionGroupConfig,
    ) -> Result<()> {
        let body = serde_json::to_vec(cfg).map_err(|e| ClientError::Other(e.to_string()))?;
        let req = RemotingCommand::request(rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).with_body(body);
        Self::expect_ok("updateSubGroup", self.call(addr, req).await?)?;
        Ok(())
    }

    /// DELETE_SUBSCRIPTIONGROUP (and the group's offsets with `clean_offset`).
    pub async fn delete_subscription_group(
        &self,
        addr: &str,
        group: &str,
        clean_offset: bool,
    ) -> Result<()> {
        let mut req = RemotingCommand::request(rc::DELETE_SUBSCRIPTIONGROUP);
        meridian_protocol::header::admin::DeleteSubscriptionGroupRequestHeader {
            group_name: group.to_string(),
            clean_offset,
        }
        .write(&mut req);
        Self::expect_ok("deleteSubGroup", self.call(addr, req).await?)?;
        Ok(())
    }

    /// SEARCH_OFFSET_BY_TIMESTAMP: the first offset of a queue stored at or
    /// after `timestamp` (ms).
    pub async fn search_offset(
        &self,
        addr: &str,
        topic: &str,
        queue_id: i32,
        timestamp: i64,
    ) -> Result<i64> {
        use meridian_protocol::header::offset::{
            SearchOffsetRequestHeader, SearchOffsetResponseHeader,
        };
        let mut req = RemotingCommand::request(rc::SEARCH_OFFSET_BY_TIMESTAMP);
        SearchOffsetRequestHeader {
            topic: topic.to_string(),
            queue_id,
            timestamp,
        }
        .write(&mut req);
        let r = Self::expect_ok("searchOffset", self.call(addr, req).await?)?;
        Ok(SearchOffsetResponseHeader::parse(&r)
            .map_err(|e| ClientError::Decode {
                what: "searchOffset".into(),
                detail: e.to_string(),
            })?
            .offset)
    }

    /// VIEW_BROKER_STATS_DATA: (sum, tps) over the last minute, hour and
    /// day of `stats_name` (`TOPIC_PUT_NUMS`, `GROUP_GET_NUMS`) for `key`.
    pub async fn broker_stats(
        &self,
        addr: &str,
        stats_name: &str,
        key: &str,
    ) -> Result<[(u64, f64); 3]> {
        let req = RemotingCommand::request(rc::VIEW_BROKER_STATS_DATA)
            .with_ext("statsName", stats_name)
            .with_ext("statsKey", key);
        let r = Self::expect_ok("viewBrokerStatsData", self.call(addr, req).await?)?;
        let v: serde_json::Value = Self::json("broker stats", &r.body)?;
        let w = |k: &str| {
            (
                v[k]["sum"].as_u64().unwrap_or(0),
                v[k]["tps"].as_f64().unwrap_or(0.0),
            )
        };
        Ok([w("statsMinute"), w("statsHour"), w("statsDay")])
    }

    /// QUERY_TOPIC_CONSUME_BY_WHO: the consumer groups of `topic` on `addr`
    /// (with committed offsets or subscribed now).
    pub async fn consumed_by_who(&self, addr: &str, topic: &str) -> Result<Vec<String>> {
        let mut req = RemotingCommand::request(rc::QUERY_TOPIC_CONSUME_BY_WHO);
        meridian_protocol::header::admin::QueryTopicConsumeByWhoRequestHeader {
            topic: topic.to_string(),
        }
        .write(&mut req);
        let r = Self::expect_ok("queryTopicConsumeByWho", self.call(addr, req).await?)?;
        let v: serde_json::Value = Self::json("consumer groups", &r.body)?;
        Ok(v["groupList"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|g| g.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// CONSUME_MESSAGE_DIRECTLY through the broker at `addr`: the message
    /// with offset id `msg_id` handed to consumer `client_id` of `group`;
    /// its answer (the client's `ConsumeMessageDirectlyResult` JSON).
    pub async fn consume_message_directly(
        &self,
        addr: &str,
        group: &str,
        client_id: &str,
        msg_id: &str,
    ) -> Result<Vec<u8>> {
        let mut req = RemotingCommand::request(rc::CONSUME_MESSAGE_DIRECTLY);
        meridian_protocol::header::consumer::ConsumeMessageDirectlyResultRequestHeader {
            consumer_group: group.to_string(),
            client_id: client_id.to_string(),
            msg_id: msg_id.to_string(),
            broker_name: None,
            topic: None,
        }
        .write(&mut req);
        let r = Self::expect_ok("consumeMessageDirectly", self.call(addr, req).await?)?;
        Ok(r.body.to_vec())
    }
}

/// A `key=value` lines body (GET_BROKER_CONFIG, GET_NAMESRV_CONFIG).
fn properties(body: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}
