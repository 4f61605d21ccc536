//! The topics this broker serves, persisted in `config/topics.json`.
//!
//! RocketMQ's rules for creating topics without an operator:
//! - a send to an unknown topic creates it when the default topic (`TBW102`)
//!   exists with the inherit permission — which it does when
//!   `autoCreateTopicEnable=true` — with min(requested, default) queues;
//! - `%RETRY%<group>` appears when a consumer of the group sends its first
//!   heartbeat, `%DLQ%<group>` when its first message dies.
//!
//! Each creation is persisted at once and registered with every name server
//! at once, so clients can route to the new topic without waiting for the
//! periodic registration.
//!
//! Copy queues: a topic relayed from other regions has, after its own
//! writable queues, read-only copies of the other regions' queues (see
//! `processor::relay`). Routes separate read and write queue counts, so
//! stock producers write only to queues `0..writeQueueNums` and stock
//! consumers read all `readQueueNums`. Which origin queue each copy holds
//! is the topic's `meridian.copyQueues` attribute, so it travels wherever a
//! topic config does (slaves, the relay, `topics.json`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use meridian_protocol::body::{perm, DataVersion, TopicConfig, TopicConfigSerializeWrapper};
use meridian_protocol::origin::{OriginQueue, COPY_QUEUES_ATTRIBUTE};
use parking_lot::RwLock;

use crate::config::BrokerConfig;

pub const AUTO_CREATE_TOPIC_KEY_TOPIC: &str = "TBW102";
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
pub const SELF_TEST_TOPIC: &str = "SELF_TEST_TOPIC";
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
pub const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";
pub const BENCHMARK_TOPIC: &str = "BenchmarkTest";
pub const OFFSET_MOVED_EVENT: &str = "OFFSET_MOVED_EVENT";

/// The topic request-reply replies are sent to: `<cluster>_REPLY_TOPIC`.
pub fn reply_topic(cluster: &str) -> String {
    format!("{cluster}_REPLY_TOPIC")
}

/// A topic's copy queues: queue id → the origin queue it holds.
pub fn copy_queues(cfg: &TopicConfig) -> BTreeMap<i32, OriginQueue> {
    meridian_protocol::origin::copy_queues(&cfg.attributes)
}

fn set_copy_queues(cfg: &mut TopicConfig, copies: &BTreeMap<i32, OriginQueue>) {
    if copies.is_empty() {
        cfg.attributes.remove(COPY_QUEUES_ATTRIBUTE);
        return;
    }
    cfg.attributes.insert(
        COPY_QUEUES_ATTRIBUTE.to_string(),
        meridian_protocol::origin::format_copy_queues(copies),
    );
    let end = copies.keys().next_back().map_or(0, |q| q + 1);
    cfg.read_queue_nums = cfg.read_queue_nums.max(end);
}

/// Most copy queues one topic may have on one broker.
pub const MAX_COPY_QUEUES: usize = 4096;

/// Longest topic name RocketMQ accepts.
pub const TOPIC_MAX_LENGTH: usize = 127;

pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}")
}

pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_GROUP_TOPIC_PREFIX}{group}")
}

/// RocketMQ's topic name rule: letters, digits, `%`, `-`, `_`, `|`, at most
/// 127 characters.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("the topic name is empty".into());
    }
    if topic.len() > TOPIC_MAX_LENGTH {
        return Err(format!(
            "the topic name is longer than {TOPIC_MAX_LENGTH} characters"
        ));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '%' | '-' | '_' | '|')))
    {
        return Err(format!(
            "the topic name `{topic}` contains `{c}`; use letters, digits, %, -, _ or |"
        ));
    }
    Ok(())
}

pub struct TopicConfigManager {
    path: PathBuf,
    table: RwLock<Tables>,
    /// One writer of the file at a time, each writing the table as it is
    /// once its turn comes: two changes at once then never leave the older
    /// table on disk, nor share the temporary file.
    persisting: parking_lot::Mutex<()>,
}

struct Tables {
    topics: HashMap<String, TopicConfig>,
    version: DataVersion,
}

impl TopicConfigManager {
    /// Load `config/topics.json` (if any) and add the system topics.
    pub fn open(config: &BrokerConfig, delay_levels: usize) -> std::io::Result<TopicConfigManager> {
        let path = config.store.root_dir.join("config").join("topics.json");
        let mut topics = HashMap::new();
        if let Some(w) = crate::load_json::<TopicConfigSerializeWrapper>(&path, "topic config")? {
            topics = w.topic_config_table;
        }
        let mut add = |name: &str, queues: i32, p: i32| {
            topics
                .entry(name.to_string())
                .or_insert_with(|| topic_config(name, queues, p));
        };
        if config.auto_create_topic_enable {
            add(
                AUTO_CREATE_TOPIC_KEY_TOPIC,
                config.default_topic_queue_nums,
                perm::PERM_READ | perm::PERM_WRITE | perm::PERM_INHERIT,
            );
        }
        add(SELF_TEST_TOPIC, 1, perm::PERM_READ | perm::PERM_WRITE);
        add(BENCHMARK_TOPIC, 8, perm::PERM_READ | perm::PERM_WRITE);
        add(OFFSET_MOVED_EVENT, 1, perm::PERM_READ | perm::PERM_WRITE);
        add(
            SCHEDULE_TOPIC,
            delay_levels as i32,
            perm::PERM_READ | perm::PERM_WRITE,
        );
        // Transactions' system topics exist on every broker from the start,
        // so a new master or Raft leader has them too.
        add(
            crate::transaction::HALF_TOPIC,
            1,
            perm::PERM_READ | perm::PERM_WRITE,
        );
        add(
            crate::transaction::OP_TOPIC,
            1,
            perm::PERM_READ | perm::PERM_WRITE,
        );
        add(
            crate::timer::TIMER_TOPIC,
            1,
            perm::PERM_READ | perm::PERM_WRITE,
        );
        add(
            crate::raft_state::STATE_TOPIC,
            1,
            perm::PERM_READ | perm::PERM_WRITE,
        );
        add(
            &config.broker_cluster_name,
            16,
            perm::PERM_READ | perm::PERM_WRITE,
        );
        add(&config.broker_name, 1, perm::PERM_READ | perm::PERM_WRITE);
        if !config.auto_create_topic_enable {
            // The default topic must not keep granting auto-creation after
            // an operator turned it off.
            topics.remove(AUTO_CREATE_TOPIC_KEY_TOPIC);
        }
        let m = TopicConfigManager {
            path,
            table: RwLock::new(Tables {
                topics,
                version: DataVersion::default(),
            }),
            persisting: parking_lot::Mutex::new(()),
        };
        m.persist();
        Ok(m)
    }

    pub fn get(&self, topic: &str) -> Option<TopicConfig> {
        self.table.read().topics.get(topic).cloned()
    }

    pub fn contains(&self, topic: &str) -> bool {
        self.table.read().topics.contains_key(topic)
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.table.read().topics.keys().cloned().collect();
        v.sort();
        v
    }

    /// The table as registered with name servers.
    pub fn wrapper(&self) -> TopicConfigSerializeWrapper {
        let t = self.table.read();
        TopicConfigSerializeWrapper {
            topic_config_table: t.topics.clone(),
            data_version: t.version.clone(),
        }
    }

    /// Counts changes to the table.
    pub fn version_counter(&self) -> i64 {
        self.table.read().version.counter
    }

    /// The whole table and its change count, read together.
    pub fn snapshot(&self) -> (HashMap<String, TopicConfig>, i64) {
        let t = self.table.read();
        (t.topics.clone(), t.version.counter)
    }

    /// Apply changes read from the Raft state log. Returns true when
    /// something changed.
    pub fn apply_logged(&self, upserts: Vec<TopicConfig>, deletes: &[String]) -> bool {
        let changed = {
            let mut t = self.table.write();
            let mut changed = false;
            for cfg in upserts {
                if t.topics.get(&cfg.topic_name) != Some(&cfg) {
                    t.topics.insert(cfg.topic_name.clone(), cfg);
                    changed = true;
                }
            }
            for name in deletes {
                changed |= t.topics.remove(name).is_some();
            }
            if changed {
                bump(&mut t.version);
            }
            changed
        };
        if changed {
            self.persist();
        }
        changed
    }

    /// Create or replace a topic (admin `updateTopic`). Returns true when
    /// something changed.
    pub fn upsert(&self, cfg: TopicConfig) -> bool {
        let changed = {
            let mut t = self.table.write();
            let changed = t.topics.get(&cfg.topic_name) != Some(&cfg);
            if changed {
                t.topics.insert(cfg.topic_name.clone(), cfg);
                bump(&mut t.version);
            }
            changed
        };
        if changed {
            self.persist();
        }
        changed
    }

    pub fn delete(&self, topic: &str) -> bool {
        let removed = {
            let mut t = self.table.write();
            let removed = t.topics.remove(topic).is_some();
            if removed {
                bump(&mut t.version);
            }
            removed
        };
        if removed {
            self.persist();
        }
        removed
    }

    /// Replace the whole table with the master's (slave only). Returns
    /// true when something changed.
    pub fn replace_all(&self, topics: HashMap<String, TopicConfig>) -> bool {
        let changed = {
            let mut t = self.table.write();
            if t.topics == topics {
                false
            } else {
                t.topics = topics;
                bump(&mut t.version);
                true
            }
        };
        if changed {
            self.persist();
        }
        changed
    }

    /// A send to `topic` that does not exist: create it from the default
    /// topic's template, as RocketMQ does. Returns the new config, or `None`
    /// when the default topic does not allow it.
    pub fn create_in_send(
        &self,
        topic: &str,
        default_topic: &str,
        client_queue_nums: i32,
        topic_sys_flag: i32,
    ) -> Option<TopicConfig> {
        let created = {
            let mut t = self.table.write();
            if let Some(existing) = t.topics.get(topic) {
                return Some(existing.clone());
            }
            let template = t.topics.get(default_topic)?;
            if template.perm & perm::PERM_INHERIT == 0 {
                return None;
            }
            let queues = client_queue_nums.clamp(1, template.write_queue_nums.max(1));
            let mut cfg = topic_config(topic, queues, template.perm & !perm::PERM_INHERIT);
            cfg.topic_sys_flag = topic_sys_flag;
            t.topics.insert(topic.to_string(), cfg.clone());
            bump(&mut t.version);
            cfg
        };
        tracing::info!(
            topic,
            queues = created.write_queue_nums,
            "topic auto-created by a send"
        );
        self.persist();
        Some(created)
    }

    /// Create a retry or dead-letter topic if it is missing. Returns the
    /// config and whether it was created now.
    pub fn ensure(&self, topic: &str, queues: i32, p: i32) -> (TopicConfig, bool) {
        if let Some(c) = self.get(topic) {
            return (c, false);
        }
        let cfg = {
            let mut t = self.table.write();
            if let Some(c) = t.topics.get(topic) {
                return (c.clone(), false);
            }
            let cfg = topic_config(topic, queues, p);
            t.topics.insert(topic.to_string(), cfg.clone());
            bump(&mut t.version);
            cfg
        };
        tracing::info!(topic, "topic created");
        self.persist();
        (cfg, true)
    }

    /// The queue of `topic` that copies `origin`, given one if it has none
    /// yet: after the topic's own queues and the copies it has, skipping
    /// ids `taken` says hold records already. A missing topic is created
    /// with `write_queues` own queues. Returns the queue id and whether the
    /// table changed (then it is persisted and should be registered).
    pub fn copy_queue(
        &self,
        topic: &str,
        origin: &OriginQueue,
        write_queues: i32,
        taken: impl Fn(i32) -> bool,
    ) -> Result<(i32, bool), String> {
        if let Some(cfg) = self.get(topic) {
            if let Some((q, _)) = copy_queues(&cfg).into_iter().find(|(_, o)| o == origin) {
                return Ok((q, false));
            }
        }
        let q = {
            let mut t = self.table.write();
            let cfg = t.topics.entry(topic.to_string()).or_insert_with(|| {
                topic_config(
                    topic,
                    write_queues.clamp(1, 1024),
                    perm::PERM_READ | perm::PERM_WRITE,
                )
            });
            let mut copies = copy_queues(cfg);
            if let Some((q, _)) = copies.iter().find(|(_, o)| *o == origin) {
                return Ok((*q, false));
            }
            if copies.len() >= MAX_COPY_QUEUES {
                return Err(format!(
                    "topic {topic} already has {MAX_COPY_QUEUES} copy queues on this broker"
                ));
            }
            let mut q = cfg
                .write_queue_nums
                .max(copies.keys().next_back().map_or(0, |q| q + 1));
            while taken(q) {
                q += 1;
            }
            copies.insert(q, origin.clone());
            set_copy_queues(cfg, &copies);
            bump(&mut t.version);
            q
        };
        tracing::info!(topic, queue_id = q, origin = %origin, "copy queue created");
        self.persist();
        Ok((q, true))
    }

    /// Record that queue `queue_id` of `topic` holds a copy of `origin`
    /// (found in its records: the table had lost it). Returns true if the
    /// table changed.
    pub fn adopt_copy_queue(&self, topic: &str, queue_id: i32, origin: &OriginQueue) -> bool {
        {
            let mut t = self.table.write();
            let Some(cfg) = t.topics.get_mut(topic) else {
                return false;
            };
            let mut copies = copy_queues(cfg);
            if queue_id < cfg.write_queue_nums
                || copies.contains_key(&queue_id)
                || copies.values().any(|o| o == origin)
            {
                return false;
            }
            copies.insert(queue_id, origin.clone());
            set_copy_queues(cfg, &copies);
            bump(&mut t.version);
        }
        tracing::warn!(topic, queue_id, origin = %origin, "copy queue found in the store and adopted");
        self.persist();
        true
    }

    /// Apply an admin's `updateTopic` to a topic that may have copy queues:
    /// the copies are kept (and stay readable), and own write queues may
    /// not grow into them.
    pub fn update_keeping_copies(&self, mut cfg: TopicConfig) -> Result<bool, String> {
        if let Some(old) = self.get(&cfg.topic_name) {
            let copies = copy_queues(&old);
            if let Some(first) = copies.keys().next() {
                if cfg.write_queue_nums > *first {
                    return Err(format!(
                        "queues {first} and up of topic {} hold copies of other regions' queues; \
                         its own queues can grow to {first} at most",
                        cfg.topic_name
                    ));
                }
                set_copy_queues(&mut cfg, &copies);
            }
        }
        Ok(self.upsert(cfg))
    }

    /// Write the table crash-safely. A failure is logged: the table in
    /// memory stays authoritative and the next change retries.
    pub fn persist(&self) {
        let _one = self.persisting.lock();
        let wrapper = self.wrapper();
        let result = crate::persist_json(&self.path, &wrapper);
        if let Err(e) = result {
            tracing::error!(path = %self.path.display(), error = %e, "cannot persist topic config");
        }
    }
}

fn bump(v: &mut DataVersion) {
    v.counter += 1;
    v.timestamp = crate::now_ms();
}

pub fn topic_config(name: &str, queues: i32, p: i32) -> TopicConfig {
    TopicConfig {
        topic_name: name.to_string(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm: p,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_rocketmq_rules() {
        assert!(validate_topic("orders-1_%RETRY%|x").is_ok());
        assert!(validate_topic("").is_err());
        assert!(validate_topic("a b").is_err());
        assert!(validate_topic(&"x".repeat(128)).is_err());
    }

    #[test]
    fn auto_create_takes_min_of_requested_and_default() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = BrokerConfig::new(dir.path().to_path_buf());
        cfg.default_topic_queue_nums = 4;
        let m = TopicConfigManager::open(&cfg, 18).unwrap();
        let t = m
            .create_in_send("fresh", AUTO_CREATE_TOPIC_KEY_TOPIC, 8, 0)
            .unwrap();
        assert_eq!(t.write_queue_nums, 4);
        assert_eq!(t.perm & perm::PERM_INHERIT, 0);
        let t = m
            .create_in_send("fresh2", AUTO_CREATE_TOPIC_KEY_TOPIC, 2, 0)
            .unwrap();
        assert_eq!(t.write_queue_nums, 2);
        // Survives a reopen.
        drop(m);
        let m = TopicConfigManager::open(&cfg, 18).unwrap();
        assert!(m.contains("fresh") && m.contains("fresh2"));
    }

    #[test]
    fn auto_create_off_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = BrokerConfig::new(dir.path().to_path_buf());
        cfg.auto_create_topic_enable = false;
        let m = TopicConfigManager::open(&cfg, 18).unwrap();
        assert!(m
            .create_in_send("fresh", AUTO_CREATE_TOPIC_KEY_TOPIC, 4, 0)
            .is_none());
    }
}
