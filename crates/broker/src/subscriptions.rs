//! Subscription groups: each consumer group's settings on this broker
//! (RocketMQ's SubscriptionGroupManager), in
//! `<storePathRootDir>/config/subscriptionGroup.json`. Set with
//! UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (`meridian admin updateSubGroup`),
//! removed with DELETE_SUBSCRIPTIONGROUP (`deleteSubGroup`), and honoured:
//! a group with `consumeEnable=false` may not pull, one with
//! `consumeBroadcastEnable=false` may not pull in broadcast mode, and its
//! `retryQueueNums` and `retryMaxTimes` shape its retries. A group with no
//! entry has RocketMQ's defaults; with `autoCreateSubscriptionGroup=false`
//! it may not consume until one is made. Slaves copy the table from their
//! master every few seconds (`slave_sync`); in Raft mode changes travel
//! through the Raft log like topic configs (`raft_state`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use meridian_protocol::body::{DataVersion, SubscriptionGroupConfig, SubscriptionGroupWrapper};
use parking_lot::{Mutex, RwLock};

pub struct SubscriptionGroupManager {
    path: PathBuf,
    table: RwLock<SubscriptionGroupWrapper>,
    /// One writer of the file at a time (see `TopicConfigManager`).
    persisting: Mutex<()>,
}

impl SubscriptionGroupManager {
    pub fn open(root: &std::path::Path) -> std::io::Result<SubscriptionGroupManager> {
        let path = root.join("config").join("subscriptionGroup.json");
        let table = crate::load_json::<SubscriptionGroupWrapper>(&path, "subscription group")?
            .unwrap_or_default();
        Ok(SubscriptionGroupManager {
            path,
            table: RwLock::new(table),
            persisting: Mutex::new(()),
        })
    }

    /// The settings of `group`, if it has an entry.
    pub fn get(&self, group: &str) -> Option<SubscriptionGroupConfig> {
        self.table
            .read()
            .subscription_group_table
            .get(group)
            .cloned()
    }

    /// Create or replace `cfg`'s entry.
    pub fn upsert(&self, cfg: SubscriptionGroupConfig) {
        {
            let mut t = self.table.write();
            t.subscription_group_table
                .insert(cfg.group_name.clone(), cfg);
            bump(&mut t.data_version);
        }
        self.persist();
    }

    /// Remove `group`'s entry; whether there was one.
    pub fn delete(&self, group: &str) -> bool {
        let removed = {
            let mut t = self.table.write();
            let removed = t.subscription_group_table.remove(group).is_some();
            if removed {
                bump(&mut t.data_version);
            }
            removed
        };
        if removed {
            self.persist();
        }
        removed
    }

    pub fn wrapper(&self) -> SubscriptionGroupWrapper {
        self.table.read().clone()
    }

    /// The whole table and its change count, read together (the Raft
    /// state writer diffs it against what it last wrote).
    pub fn snapshot(&self) -> (HashMap<String, SubscriptionGroupConfig>, i64) {
        let t = self.table.read();
        let groups = t
            .subscription_group_table
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (groups, t.data_version.counter)
    }

    /// Counts changes to the table.
    pub fn version_counter(&self) -> i64 {
        self.table.read().data_version.counter
    }

    /// The names of every group with an entry.
    pub fn names(&self) -> Vec<String> {
        self.table
            .read()
            .subscription_group_table
            .keys()
            .cloned()
            .collect()
    }

    /// Apply changes read from the Raft state log. Returns true when
    /// something changed.
    pub fn apply_logged(&self, upserts: Vec<SubscriptionGroupConfig>, deletes: &[String]) -> bool {
        let changed = {
            let mut t = self.table.write();
            let mut changed = false;
            for cfg in upserts {
                if t.subscription_group_table.get(&cfg.group_name) != Some(&cfg) {
                    t.subscription_group_table
                        .insert(cfg.group_name.clone(), cfg);
                    changed = true;
                }
            }
            for name in deletes {
                changed |= t.subscription_group_table.remove(name).is_some();
            }
            if changed {
                bump(&mut t.data_version);
            }
            changed
        };
        if changed {
            self.persist();
        }
        changed
    }

    /// Take the master's table (slaves), or the leader's from a Raft
    /// snapshot.
    pub fn replace_all(&self, table: BTreeMap<String, SubscriptionGroupConfig>) -> bool {
        let changed = {
            let mut t = self.table.write();
            if t.subscription_group_table == table {
                false
            } else {
                t.subscription_group_table = table;
                bump(&mut t.data_version);
                true
            }
        };
        if changed {
            self.persist();
        }
        changed
    }

    fn persist(&self) {
        let _one = self.persisting.lock();
        let wrapper = self.wrapper();
        if let Err(e) = crate::persist_json(&self.path, &wrapper) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot persist subscription groups");
        }
    }
}

fn bump(v: &mut DataVersion) {
    v.counter += 1;
    v.timestamp = crate::now_ms();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_survive_reopen_and_deletes_stick() {
        let dir = tempfile::tempdir().unwrap();
        let m = SubscriptionGroupManager::open(dir.path()).unwrap();
        assert_eq!(m.get("g"), None);
        let mut cfg = SubscriptionGroupConfig::new("g");
        cfg.consume_enable = false;
        cfg.retry_queue_nums = 3;
        m.upsert(cfg.clone());
        m.upsert(SubscriptionGroupConfig::new("h"));
        assert!(m.delete("h"));
        assert!(!m.delete("h"));
        let m = SubscriptionGroupManager::open(dir.path()).unwrap();
        assert_eq!(m.get("g"), Some(cfg));
        assert_eq!(m.get("h"), None);
        assert!(m.wrapper().data_version.counter > 0);
    }

    #[test]
    fn logged_changes_apply_once_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let m = SubscriptionGroupManager::open(dir.path()).unwrap();
        m.upsert(SubscriptionGroupConfig::new("gone"));
        let mut cfg = SubscriptionGroupConfig::new("g");
        cfg.consume_enable = false;
        cfg.retry_queue_nums = 3;
        assert!(m.apply_logged(vec![cfg.clone()], &["gone".to_string()]));
        let version = m.version_counter();
        // The same record again (applied twice after a restart): nothing
        // changes, the version stays.
        assert!(!m.apply_logged(vec![cfg.clone()], &["gone".to_string()]));
        assert_eq!(m.version_counter(), version);
        let m = SubscriptionGroupManager::open(dir.path()).unwrap();
        assert_eq!(m.names(), vec!["g".to_string()]);
        assert_eq!(m.get("g"), Some(cfg));
    }
}
