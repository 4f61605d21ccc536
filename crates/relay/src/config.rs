//! `relay.conf`: the keys of RocketMQ's cross-cluster replicator where it has
//! them.
//!
//! | key | meaning |
//! |---|---|
//! | `srcClusterAddr` | source name servers, `;`-separated (required) |
//! | `destClusterAddr` | target name servers, `;`-separated (required) |
//! | `replicationGroup` | the relay's name (required) |
//! | `topics` | topics to relay, comma-separated; `/regex/` items match by pattern (required) |
//! | `relayGroupTopics` | also relay the `%RETRY%` and `%DLQ%` topics of every consumer group with a committed offset on a relayed topic (true) |
//! | `tagFilter` | RocketMQ's tag expression (`TagA || TagB`; `*` = all, the default): records of other tags are carried as placeholders that keep their offsets |
//! | `maxTps` | most records relayed per second over the whole link, 0 = no limit |
//! | `relayPullBatchSize` | most records pulled and appended at once (256) |
//! | `relayPipelineDepth` | appends in flight per queue (8) |
//! | `routeRefreshIntervalMs` | how often routes and queues are looked up again (3000) |
//! | `offsetSyncIntervalMs` | how often consumer offsets are carried (5000) |
//! | `listenPort` | the status port (GET_BROKER_RUNTIME_INFO with the counters); absent: none |

use meridian_remoting::conf::{Conf, ConfError};

/// Which topics a link relays.
#[derive(Clone, Debug)]
pub struct TopicSelector {
    pub names: Vec<String>,
    pub patterns: Vec<regex::Regex>,
}

impl TopicSelector {
    pub fn parse(s: &str) -> Result<TopicSelector, String> {
        let mut sel = TopicSelector {
            names: Vec::new(),
            patterns: Vec::new(),
        };
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.strip_prefix('/').and_then(|i| i.strip_suffix('/')) {
                Some(p) => {
                    let re = regex::Regex::new(&format!("^(?:{p})$"))
                        .map_err(|e| format!("`{item}` is not a valid pattern: {e}"))?;
                    sel.patterns.push(re);
                }
                None => sel.names.push(item.to_string()),
            }
        }
        if sel.names.is_empty() && sel.patterns.is_empty() {
            return Err("no topic given".into());
        }
        Ok(sel)
    }

    /// Whether a pattern must be matched against the source's topic list.
    pub fn has_patterns(&self) -> bool {
        !self.patterns.is_empty()
    }

    pub fn matches(&self, topic: &str) -> bool {
        self.names.iter().any(|n| n == topic) || self.patterns.iter().any(|p| p.is_match(topic))
    }
}

/// Which records a link carries whole (`tagFilter`): `*`, or a set of tags.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TagSelector(Option<std::collections::BTreeSet<String>>);

impl TagSelector {
    /// RocketMQ's tag expression: `*` or empty for every record, else tags
    /// separated by `||`.
    pub fn parse(expr: &str) -> TagSelector {
        let set: std::collections::BTreeSet<String> = expr
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect();
        if set.is_empty() || set.contains("*") {
            TagSelector(None)
        } else {
            TagSelector(Some(set))
        }
    }

    /// Whether a record with these tags is carried whole.
    pub fn carries(&self, tags: Option<&str>) -> bool {
        match &self.0 {
            None => true,
            Some(set) => tags.is_some_and(|t| set.contains(t)),
        }
    }

    pub fn is_all(&self) -> bool {
        self.0.is_none()
    }
}

#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub src_namesrv: String,
    pub dest_namesrv: String,
    pub replication_group: String,
    pub topics: TopicSelector,
    pub max_tps: u64,
    pub pull_batch: i32,
    pub pipeline_depth: usize,
    pub refresh_ms: u64,
    pub listen_port: Option<u16>,
    pub offset_sync_ms: u64,
    /// Relay the retry and dead-letter topics of the relayed topics'
    /// consumer groups.
    pub group_topics: bool,
    pub tag_filter: TagSelector,
    /// Accounts the relay signs with on each side (`srcAccessKey` /
    /// `srcSecretKey`, `destAccessKey` / `destSecretKey`) for brokers with
    /// `aclEnable=true`; relaying needs an admin account on the
    /// destination (RELAY_APPEND) and SUB on the source topics.
    pub src_credentials: Option<meridian_remoting::acl::Credentials>,
    pub dest_credentials: Option<meridian_remoting::acl::Credentials>,
    /// `tls.*`: TLS to both sides (`tls.enable`, `tls.client.*`) and on the
    /// status port (`tls.server.*`).
    pub tls: meridian_remoting::tls::TlsSettings,
    /// `metricsExporterType=PROM` and the other exporter keys.
    pub metrics: meridian_metrics::MetricsConfig,
}

impl RelayConfig {
    /// Read a relay.conf. Returns the config and the keys it did not know.
    pub fn from_conf(conf: &mut Conf) -> Result<(RelayConfig, Vec<String>), ConfError> {
        let required = |conf: &mut Conf, key: &str| {
            conf.str(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ConfError::Missing(key.to_string()))
        };
        let src_namesrv = required(conf, "srcClusterAddr")?;
        let dest_namesrv = required(conf, "destClusterAddr")?;
        let replication_group = required(conf, "replicationGroup")?;
        let topics_text = required(conf, "topics")?;
        let topics = TopicSelector::parse(&topics_text).map_err(|reason| ConfError::Invalid {
            key: "topics".into(),
            value: topics_text.clone(),
            reason,
        })?;
        let mut c = RelayConfig {
            src_namesrv,
            dest_namesrv,
            replication_group,
            topics,
            max_tps: 0,
            pull_batch: 256,
            pipeline_depth: 8,
            refresh_ms: 3_000,
            listen_port: None,
            offset_sync_ms: 5_000,
            group_topics: true,
            tag_filter: TagSelector::default(),
            src_credentials: None,
            dest_credentials: None,
            tls: Default::default(),
            metrics: Default::default(),
        };
        let mut credentials = |side: &str| -> Result<_, ConfError> {
            let (ak_key, sk_key) = (format!("{side}AccessKey"), format!("{side}SecretKey"));
            match (conf.str(&ak_key), conf.str(&sk_key)) {
                (Some(ak), Some(sk)) => Ok(Some(meridian_remoting::acl::Credentials::new(ak, sk))),
                (None, None) => Ok(None),
                _ => Err(ConfError::Invalid {
                    key: ak_key,
                    value: "(one of the pair)".into(),
                    reason: format!("give both {side}AccessKey and {side}SecretKey"),
                }),
            }
        };
        c.src_credentials = credentials("src")?;
        c.dest_credentials = credentials("dest")?;
        c.tls = meridian_remoting::tls::TlsSettings::from_conf(conf)?;
        c.metrics = meridian_metrics::MetricsConfig::from_conf(conf)?;
        if let Some(v) = conf.str("tagFilter") {
            c.tag_filter = TagSelector::parse(&v);
        }
        if let Some(v) = conf.bool("relayGroupTopics")? {
            c.group_topics = v;
        }
        if let Some(v) = conf.get::<u64>("offsetSyncIntervalMs")? {
            c.offset_sync_ms = v.clamp(100, 600_000);
        }
        c.listen_port = conf.get::<u16>("listenPort")?;
        if let Some(v) = conf.get::<u64>("maxTps")? {
            c.max_tps = v;
        }
        if let Some(v) = conf.get::<i32>("relayPullBatchSize")? {
            c.pull_batch = v.clamp(1, 1024);
        }
        if let Some(v) = conf.get::<usize>("relayPipelineDepth")? {
            c.pipeline_depth = v.clamp(1, 64);
        }
        if let Some(v) = conf.get::<u64>("routeRefreshIntervalMs")? {
            c.refresh_ms = v.clamp(100, 60_000);
        }
        Ok((c, conf.unknown_keys()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patterns() {
        let s = TopicSelector::parse("orders, /pay-.*/ ,").unwrap();
        assert!(s.matches("orders"));
        assert!(s.matches("pay-eu"));
        assert!(!s.matches("xpay-eu"));
        assert!(!s.matches("order"));
        assert!(TopicSelector::parse(" , ").is_err());
        assert!(TopicSelector::parse("/(/").is_err());
    }

    #[test]
    fn tag_filters() {
        let all = TagSelector::parse(" * ");
        assert!(all.is_all() && all.carries(None) && all.carries(Some("x")));
        let some = TagSelector::parse("TagA || TagB");
        assert!(some.carries(Some("TagA")) && some.carries(Some("TagB")));
        assert!(!some.carries(Some("TagC")) && !some.carries(None));
        assert!(TagSelector::parse("").is_all());
    }

    #[test]
    fn required_keys_are_named() {
        let mut conf = Conf::parse("srcClusterAddr=a:1\ntopics=t\nreplicationGroup=g\n");
        let e = RelayConfig::from_conf(&mut conf).unwrap_err().to_string();
        assert!(e.contains("destClusterAddr"), "{e}");
        let mut conf = Conf::parse(
            "srcClusterAddr=a:1\ndestClusterAddr=b:1\ntopics=t\nreplicationGroup=g\nmaxTps=5\nbogus=1\n",
        );
        let (c, unknown) = RelayConfig::from_conf(&mut conf).unwrap();
        assert_eq!(c.max_tps, 5);
        assert_eq!(unknown, vec!["bogus".to_string()]);
    }
}
