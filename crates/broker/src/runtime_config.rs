//! Broker settings that change at run time, with UPDATE_BROKER_CONFIG
//! (`meridian admin updateBrokerConfig`): `brokerPermission`. A change is
//! kept in `<storePathRootDir>/config/broker.properties` and applied over
//! broker.conf at the next start, so a broker drained for maintenance
//! stays drained across a restart. Other keys are refused with a message
//! saying to set them in broker.conf and restart.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use meridian_remoting::conf::Conf;

use crate::config::{parse_broker_permission, BrokerConfig};
use crate::BrokerInner;

/// The keys UPDATE_BROKER_CONFIG can change.
pub const CHANGEABLE: &[&str] = &["brokerPermission"];

fn path(root: &Path) -> PathBuf {
    root.join("config").join("broker.properties")
}

/// The changes saved by earlier UPDATE_BROKER_CONFIGs.
fn saved(root: &Path) -> Result<Vec<(String, String)>, String> {
    let file = path(root);
    let bytes = meridian_store::config_file::load(&file)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .unwrap_or_default();
    Ok(pairs(&String::from_utf8_lossy(&bytes)))
}

fn pairs(text: &str) -> Vec<(String, String)> {
    let mut conf = Conf::parse(text);
    CHANGEABLE
        .iter()
        .filter_map(|k| conf.str(k).map(|v| (k.to_string(), v)))
        .collect()
}

/// Apply the saved changes to `config` (at start-up, over broker.conf).
pub fn apply_saved(config: &mut BrokerConfig) -> Result<(), String> {
    let file = path(&config.store.root_dir);
    for (k, v) in saved(&config.store.root_dir)? {
        if k == "brokerPermission" {
            config.broker_permission =
                parse_broker_permission(&v).map_err(|e| format!("{}: {e}", file.display()))?;
            tracing::info!(brokerPermission = config.broker_permission, file = %file.display(), "brokerPermission set at run time earlier, kept");
        }
    }
    Ok(())
}

/// Apply the `key=value` lines of an UPDATE_BROKER_CONFIG body: all of
/// them or, when one cannot change at run time or does not parse, none.
/// Returns the keys changed.
pub fn update(b: &BrokerInner, body: &[u8]) -> Result<Vec<String>, String> {
    let text = String::from_utf8_lossy(body);
    let mut conf = Conf::parse(&text);
    let wanted = pairs(&text);
    for k in CHANGEABLE {
        conf.str(k);
    }
    let fixed = conf.unknown_keys();
    if !fixed.is_empty() {
        return Err(format!(
            "{} cannot change at run time (only {} can): set it in broker.conf and restart the broker",
            fixed.join(", "),
            CHANGEABLE.join(", ")
        ));
    }
    if wanted.is_empty() {
        return Err("no key=value line in the request body".to_string());
    }
    let mut permission = None;
    for (k, v) in &wanted {
        if k == "brokerPermission" {
            permission = Some(parse_broker_permission(v).map_err(|e| e.to_string())?);
        }
    }
    // Saved first: a change that is answered survives a restart.
    let root = &b.config.store.root_dir;
    let mut all = saved(root)?;
    all.retain(|(k, _)| !wanted.iter().any(|(w, _)| w == k));
    all.extend(wanted.iter().cloned());
    let file: String = all.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    meridian_store::config_file::persist(&path(root), file.as_bytes())
        .map_err(|e| format!("cannot save {}: {e}", path(root).display()))?;
    if let Some(p) = permission {
        let was = b.broker_permission.swap(p, Ordering::AcqRel);
        tracing::info!(was, now = p, "brokerPermission changed at run time");
        b.register_soon();
    }
    Ok(wanted.into_iter().map(|(k, _)| k).collect())
}
