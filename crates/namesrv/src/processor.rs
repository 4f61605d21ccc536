//! The requests a name server answers.

use std::sync::Arc;
use std::time::Duration;

use meridian_protocol::body::{KVTable, RegisterBrokerBody, TopicList};
use meridian_protocol::codes::{request_code as rc, response_code as resp};
use meridian_protocol::header::namesrv::{
    AddWritePermOfBrokerRequestHeader, AddWritePermOfBrokerResponseHeader,
    DeleteTopicFromNamesrvRequestHeader, GetRouteInfoRequestHeader, RegisterBrokerRequestHeader,
    RegisterBrokerResponseHeader, UnRegisterBrokerRequestHeader,
    WipeWritePermOfBrokerRequestHeader, WipeWritePermOfBrokerResponseHeader,
};
use meridian_protocol::RemotingCommand;
use meridian_remoting::{Connection, Handler, Reply};

use crate::regions::{Regions, Report};
use crate::routes::{Registration, RouteTable};

pub struct NamesrvProcessor {
    routes: Arc<RouteTable>,
    /// This name server's part in the regions, with `regionPeers`.
    regions: Option<Arc<Regions>>,
    /// The settings GET_NAMESRV_CONFIG shows, `key=value` lines.
    config_text: String,
}

impl NamesrvProcessor {
    pub fn new(routes: Arc<RouteTable>) -> Self {
        NamesrvProcessor {
            routes,
            regions: None,
            config_text: String::new(),
        }
    }

    /// Take part in the regions.
    pub fn with_regions(mut self, regions: Option<Arc<Regions>>) -> Self {
        self.regions = regions;
        self
    }

    /// Answer GET_NAMESRV_CONFIG with `config` (`key=value` lines).
    pub fn with_config(mut self, config: String) -> Self {
        self.config_text = config;
        self
    }

    fn process(&self, conn: &Arc<Connection>, req: &RemotingCommand) -> RemotingCommand {
        let result = match req.code {
            rc::REGISTER_BROKER => self.register_broker(conn, req),
            rc::UNREGISTER_BROKER => self.unregister_broker(req),
            rc::GET_ROUTEINFO_BY_TOPIC => self.route(req),
            rc::GET_BROKER_CLUSTER_INFO => json_response(req, &self.routes.cluster_info()),
            rc::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => json_response(
                req,
                &TopicList {
                    topic_list: self.routes.topics(),
                    ..Default::default()
                },
            ),
            rc::GET_TOPICS_BY_CLUSTER => match req.req_str("cluster") {
                Ok(cluster) => json_response(
                    req,
                    &TopicList {
                        topic_list: self.routes.topics_of_cluster(cluster),
                        ..Default::default()
                    },
                ),
                Err(e) => Err(e.to_string()),
            },
            rc::DELETE_TOPIC_IN_NAMESRV => self.delete_topic(req),
            rc::GET_NAMESRV_CONFIG => Ok(req
                .response_to(resp::SUCCESS, None)
                .with_body(self.config_text.clone().into_bytes())),
            rc::UPDATE_NAMESRV_CONFIG => Ok(req.response_to(
                resp::SYSTEM_ERROR,
                "no name server setting changes at run time: set it in namesrv.conf and restart the name server"
                    .to_string(),
            )),
            rc::WIPE_WRITE_PERM_OF_BROKER => {
                let h = WipeWritePermOfBrokerRequestHeader::parse(req).map_err(|e| e.to_string());
                h.map(|h| {
                    let n = self.routes.wipe_write_perm(&h.broker_name);
                    let mut r = req.response_to(resp::SUCCESS, None);
                    WipeWritePermOfBrokerResponseHeader {
                        wipe_topic_count: n as i32,
                    }
                    .write(&mut r);
                    r
                })
            }
            rc::ADD_WRITE_PERM_OF_BROKER => {
                let h = AddWritePermOfBrokerRequestHeader::parse(req).map_err(|e| e.to_string());
                h.map(|h| {
                    let n = self.routes.add_write_perm(&h.broker_name);
                    let mut r = req.response_to(resp::SUCCESS, None);
                    AddWritePermOfBrokerResponseHeader {
                        add_topic_count: n as i32,
                    }
                    .write(&mut r);
                    r
                })
            }
            rc::REGION_EXCHANGE | rc::REGION_STATUS | rc::REGION_SWITCH => self.region_request(req),
            rc::GET_KV_CONFIG => {
                Ok(req.response_to(resp::QUERY_NOT_FOUND, "no such KV config".to_string()))
            }
            rc::GET_KVLIST_BY_NAMESPACE => json_response(req, &KVTable::default()),
            rc::PUT_KV_CONFIG | rc::DELETE_KV_CONFIG => Ok(req.response_to(resp::SUCCESS, None)),
            other => Ok(not_supported(req, other)),
        };
        result.unwrap_or_else(|msg| {
            tracing::debug!(code = req.code, peer = %conn.peer(), error = %msg, "request rejected");
            req.response_to(resp::SYSTEM_ERROR, msg)
        })
    }

    fn register_broker(
        &self,
        conn: &Arc<Connection>,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, String> {
        let h = RegisterBrokerRequestHeader::parse(req).map_err(|e| e.to_string())?;
        if h.compressed.unwrap_or(false) {
            return Err(
                "compressed broker registration is not supported; set compressedRegister=false"
                    .into(),
            );
        }
        let body: RegisterBrokerBody = if req.body.is_empty() {
            RegisterBrokerBody::default()
        } else {
            serde_json::from_slice(&req.body)
                .map_err(|e| format!("invalid register-broker body: {e}"))?
        };
        let topics = &body.topic_config_serialize_wrapper.topic_config_table;
        let result = self.routes.register(Registration {
            cluster: &h.cluster_name,
            broker_name: &h.broker_name,
            broker_addr: &h.broker_addr,
            broker_id: h.broker_id,
            ha_server_addr: &h.ha_server_addr,
            zone_name: h.zone_name.as_deref(),
            topics,
            connection_id: Some(conn.id()),
            expiry: h
                .heartbeat_timeout_millis
                .filter(|ms| *ms > 0)
                .map(|ms| Duration::from_millis(ms as u64)),
            raft_term: req
                .ext(meridian_protocol::header::namesrv::RAFT_TERM_EXT)
                .and_then(|t| t.parse().ok()),
        });
        let mut response = req.response_to(resp::SUCCESS, None);
        RegisterBrokerResponseHeader {
            ha_server_addr: result.ha_server_addr,
            master_addr: result.master_addr,
        }
        .write(&mut response);
        Ok(response.with_body(serde_json::to_vec(&KVTable::default()).unwrap_or_default()))
    }

    fn region_request(&self, req: &RemotingCommand) -> Result<RemotingCommand, String> {
        let Some(regions) = &self.regions else {
            return Ok(req.response_to(
                resp::SYSTEM_ERROR,
                "this name server knows no other region (set regionId and regionPeers in namesrv.conf)"
                    .to_string(),
            ));
        };
        match req.code {
            rc::REGION_EXCHANGE => {
                let report: Report = serde_json::from_slice(&req.body)
                    .map_err(|e| format!("invalid region report: {e}"))?;
                regions.receive(report);
                json_response(req, &regions.report())
            }
            rc::REGION_STATUS => json_response(req, &regions.status()),
            _ => {
                let region = req.req_str("region").map_err(|e| e.to_string())?;
                let target = req.ext("target").filter(|t| !t.is_empty());
                let epoch = match req.ext("epoch").filter(|e| !e.is_empty()) {
                    Some(e) => Some(
                        e.parse::<u64>()
                            .map_err(|_| format!("epoch `{e}` is not a number"))?,
                    ),
                    None => None,
                };
                let reason = req.ext("reason").unwrap_or("meridian admin switchover");
                match regions.switch(region, target, epoch, reason) {
                    Ok(state) => {
                        // Tell the other regions now rather than at the next round.
                        let r = regions.clone();
                        tokio::spawn(async move { r.round().await });
                        json_response(req, &state)
                    }
                    Err(why) => Ok(req.response_to(resp::SYSTEM_ERROR, why)),
                }
            }
        }
    }

    fn unregister_broker(&self, req: &RemotingCommand) -> Result<RemotingCommand, String> {
        let h = UnRegisterBrokerRequestHeader::parse(req).map_err(|e| e.to_string())?;
        self.routes.unregister(&h.broker_addr, "it unregistered");
        Ok(req.response_to(resp::SUCCESS, None))
    }

    fn route(&self, req: &RemotingCommand) -> Result<RemotingCommand, String> {
        let h = GetRouteInfoRequestHeader::parse(req).map_err(|e| e.to_string())?;
        Ok(route_answer(req, &h.topic, self.routes.route(&h.topic)))
    }

    /// A route query in a deployment of regions: refused until the region
    /// state is known, answered by the target region's name servers while
    /// this region is moved. `None`: answer from this name server's table.
    fn region_route(&self, req: &RemotingCommand) -> Option<Reply> {
        let regions = self.regions.as_ref()?;
        if req.ext(meridian_protocol::origin::OWN_REGION_ROUTE_EXT) == Some("true") {
            return None;
        }
        if regions.routes_ready() && regions.redirect().is_none() {
            return None;
        }
        let h = match GetRouteInfoRequestHeader::parse(req) {
            Ok(h) => h,
            Err(e) => {
                return Some(Reply::Now(Some(
                    req.response_to(resp::SYSTEM_ERROR, e.to_string()),
                )))
            }
        };
        let (regions, routes, req) = (regions.clone(), self.routes.clone(), req.clone());
        Some(Reply::Later(Box::pin(async move {
            // Just started: wait a little for the other regions' word on
            // whether this region is moved.
            let deadline = tokio::time::Instant::now() + ROUTE_WAIT;
            while !regions.routes_ready() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if !regions.routes_ready() {
                return Some(req.response_to(
                    resp::SYSTEM_BUSY,
                    "this name server has not yet heard from the other regions whether its region is moved; try again in a few seconds"
                        .to_string(),
                ));
            }
            let Some((target, addrs)) = regions.redirect() else {
                return Some(route_answer(&req, &h.topic, routes.route(&h.topic)));
            };
            let answer = match regions.route_in(&target, &addrs, &h.topic).await {
                Ok(Some(route)) => json_response(&req, &route)
                    .unwrap_or_else(|e| req.response_to(resp::SYSTEM_ERROR, e)),
                Ok(None) => req.response_to(
                    resp::TOPIC_NOT_EXIST,
                    format!(
                        "No topic route info in name server for the topic: {} (this region's clients are routed to region {target}, which has no such topic)",
                        h.topic
                    ),
                ),
                Err(e) => req.response_to(
                    resp::SYSTEM_ERROR,
                    format!(
                        "this region's clients are routed to region {target}, whose name servers cannot be reached: {e}"
                    ),
                ),
            };
            Some(answer)
        })))
    }

    fn delete_topic(&self, req: &RemotingCommand) -> Result<RemotingCommand, String> {
        let h = DeleteTopicFromNamesrvRequestHeader::parse(req).map_err(|e| e.to_string())?;
        self.routes.delete_topic(
            &h.topic,
            h.cluster_name.as_deref().filter(|c| !c.is_empty()),
        );
        Ok(req.response_to(resp::SUCCESS, None))
    }
}

impl Handler for NamesrvProcessor {
    fn handle(&self, conn: &Arc<Connection>, request: RemotingCommand) -> Reply {
        if request.code == rc::GET_ROUTEINFO_BY_TOPIC {
            if let Some(reply) = self.region_route(&request) {
                return reply;
            }
        }
        Reply::Now(Some(self.process(conn, &request)))
    }

    fn on_close(&self, conn: &Arc<Connection>) {
        // As RocketMQ's name server does: a broker whose connection closed
        // is gone now, not when its registration expires.
        self.routes.connection_closed(conn.id());
    }
}

/// How long a route query waits, just after start, for the other regions'
/// word on whether this region is moved.
const ROUTE_WAIT: Duration = Duration::from_secs(2);

fn route_answer(
    req: &RemotingCommand,
    topic: &str,
    route: Option<meridian_protocol::body::TopicRouteData>,
) -> RemotingCommand {
    match route {
        Some(route) => {
            json_response(req, &route).unwrap_or_else(|e| req.response_to(resp::SYSTEM_ERROR, e))
        }
        None => req.response_to(
            resp::TOPIC_NOT_EXIST,
            format!("No topic route info in name server for the topic: {topic}"),
        ),
    }
}

fn json_response<T: serde::Serialize>(
    req: &RemotingCommand,
    body: &T,
) -> Result<RemotingCommand, String> {
    let bytes = serde_json::to_vec(body).map_err(|e| format!("cannot encode response: {e}"))?;
    Ok(req.response_to(resp::SUCCESS, None).with_body(bytes))
}

/// The answer to a code this server does not serve; the connection stays.
pub fn not_supported(req: &RemotingCommand, code: i32) -> RemotingCommand {
    tracing::debug!(code, "request code not supported");
    req.response_to(
        resp::REQUEST_CODE_NOT_SUPPORTED,
        format!("request code {code} is not supported by the Meridian name server"),
    )
}
