//! The store's configuration: one typed struct, with RocketMQ's defaults and
//! `broker.conf` names in the field docs.

use std::path::PathBuf;

/// When an appended message is forced to disk (`flushDiskType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushDiskType {
    /// A flush thread forces the commit log every `flush_interval_ms`; a put
    /// returns once the record is in the page cache.
    AsyncFlush,
    /// A put returns once its record is on disk. Concurrent puts share one
    /// fdatasync (group commit).
    SyncFlush,
}

/// Everything the store needs to know; build with [`StoreConfig::new`] and
/// change fields as needed.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `storePathRootDir`: consume queues, index and checkpoint live here.
    pub root_dir: PathBuf,
    /// `storePathCommitLog`: default `<root_dir>/commitlog`.
    pub commit_log_dir: PathBuf,
    /// `mappedFileSizeCommitLog`: bytes per commit-log segment (1 GiB).
    pub mapped_file_size_commit_log: u64,
    /// `mappedFileSizeConsumeQueue / 20`: entries per consume-queue file (300 000).
    pub consume_queue_entries_per_file: u64,
    /// `flushDiskType`.
    pub flush_disk_type: FlushDiskType,
    /// `flushIntervalCommitLog`: period of the async flush, ms (500).
    pub flush_interval_ms: u64,
    /// `syncFlushTimeout`: how long a SYNC_FLUSH put waits for its fsync, ms (5000).
    pub sync_flush_timeout_ms: u64,
    /// `fileReservedTime`: hours a commit-log segment is kept (72).
    pub file_reserved_time_hours: u64,
    /// `deleteWhen`: local hours of the day when expired segments are
    /// deleted, `;`-separated ("04").
    pub delete_when: String,
    /// `diskMaxUsedSpaceRatio`: above this disk use (percent), segments are
    /// deleted at once, expired or not, oldest first (75).
    pub disk_max_used_space_ratio: u32,
    /// Above this disk use (percent) puts are refused with `DiskFull` (95).
    pub disk_full_ratio: u32,
    /// `maxMessageSize`: largest body accepted, bytes (4 MiB).
    pub max_message_size: usize,
    /// `messageDelayLevel`: the delay of each level, see [`message_delay_levels`].
    pub message_delay_level: String,
    /// `maxIndexNum`: index entries per index file (20 000 000).
    pub max_index_num: usize,
    /// `maxHashSlotNum`: hash slots per index file (5 000 000).
    pub max_hash_slot_num: usize,
    /// `maxTransferBytesOnMessageInMemory`: bytes one get returns at most,
    /// beyond its first message (256 KiB).
    pub max_transfer_bytes_per_get: usize,
    /// `maxTransferCountOnMessageInMemory`: messages one get returns at most (32).
    pub max_transfer_count_per_get: usize,
    /// How often consume queues and index are flushed and the checkpoint
    /// written, ms (1000).
    pub checkpoint_interval_ms: u64,
    /// How often the retention task checks disk use and expiry, ms (10 000).
    pub retention_check_interval_ms: u64,
    /// Most segments deleted in one retention pass (10).
    pub delete_files_batch_max: usize,
    /// How many of the newest commit-log segments are re-verified record by
    /// record (CRC included) on open, besides everything after the
    /// checkpoint (3).
    pub recover_segments: usize,
}

impl StoreConfig {
    /// RocketMQ's defaults under `root_dir`.
    pub fn new(root_dir: impl Into<PathBuf>) -> Self {
        let root_dir = root_dir.into();
        StoreConfig {
            commit_log_dir: root_dir.join("commitlog"),
            root_dir,
            mapped_file_size_commit_log: 1024 * 1024 * 1024,
            consume_queue_entries_per_file: 300_000,
            flush_disk_type: FlushDiskType::AsyncFlush,
            flush_interval_ms: 500,
            sync_flush_timeout_ms: 5000,
            file_reserved_time_hours: 72,
            delete_when: "04".to_string(),
            disk_max_used_space_ratio: 75,
            disk_full_ratio: 95,
            max_message_size: 4 * 1024 * 1024,
            message_delay_level: "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
                .to_string(),
            max_index_num: 20_000_000,
            max_hash_slot_num: 5_000_000,
            max_transfer_bytes_per_get: 256 * 1024,
            max_transfer_count_per_get: 32,
            checkpoint_interval_ms: 1000,
            retention_check_interval_ms: 10_000,
            delete_files_batch_max: 10,
            recover_segments: 3,
        }
    }

    pub fn consume_queue_dir(&self) -> PathBuf {
        self.root_dir.join("consumequeue")
    }

    pub fn index_dir(&self) -> PathBuf {
        self.root_dir.join("index")
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.root_dir.join("checkpoint.json")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.root_dir.join("lock")
    }

    /// Reject values the store cannot work with, saying which key to fix.
    pub fn validate(&self) -> Result<(), String> {
        let seg = self.mapped_file_size_commit_log;
        if !(64 * 1024..=i32::MAX as u64).contains(&seg) {
            return Err(format!(
                "mapped_file_size_commit_log = {seg}: must be between 64 KiB and 2 GiB - 1"
            ));
        }
        if self.consume_queue_entries_per_file == 0
            || self.consume_queue_entries_per_file > (i32::MAX as u64) / 20
        {
            return Err(format!(
                "consume_queue_entries_per_file = {}: must be between 1 and {}",
                self.consume_queue_entries_per_file,
                i32::MAX / 20
            ));
        }
        if self.max_message_size == 0 || self.max_message_size as u64 > seg / 2 {
            return Err(format!(
                "max_message_size = {}: must be positive and at most half of \
                 mapped_file_size_commit_log ({seg})",
                self.max_message_size
            ));
        }
        if self.max_index_num < 128 || self.max_index_num > (u32::MAX as usize) / 32 {
            return Err(format!(
                "max_index_num = {}: must be between 128 and {}",
                self.max_index_num,
                u32::MAX / 32
            ));
        }
        if self.max_hash_slot_num == 0 || self.max_hash_slot_num > (u32::MAX as usize) / 8 {
            return Err(format!(
                "max_hash_slot_num = {}: must be between 1 and {}",
                self.max_hash_slot_num,
                u32::MAX / 8
            ));
        }
        if self.disk_max_used_space_ratio > 100 || self.disk_full_ratio > 100 {
            return Err(
                "disk_max_used_space_ratio and disk_full_ratio are percentages (0..=100)".into(),
            );
        }
        message_delay_levels(&self.message_delay_level)
            .map_err(|e| format!("message_delay_level: {e}"))?;
        parse_delete_when(&self.delete_when).map_err(|e| format!("delete_when: {e}"))?;
        Ok(())
    }
}

/// Parse `messageDelayLevel` ("1s 5s 10s 30s 1m ... 2h"): level N (from 1)
/// delays by the N-th entry. Units: s, m, h, d. Returns milliseconds.
pub fn message_delay_levels(spec: &str) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    for item in spec.split_whitespace() {
        // The unit is the last character, which need not be ASCII.
        let unit_at = item.char_indices().last().map_or(0, |(i, _)| i);
        let (num, unit) = item.split_at(unit_at);
        let unit_ms = match unit {
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("`{item}`: a delay needs a unit of s, m, h or d")),
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{item}`: `{num}` is not a whole number"))?;
        out.push(
            n.checked_mul(unit_ms)
                .ok_or_else(|| format!("`{item}` is too long"))?,
        );
    }
    if out.is_empty() {
        return Err("no delay levels given".into());
    }
    Ok(out)
}

/// Parse `deleteWhen` ("04" or "04;16"): the hours of the day.
pub(crate) fn parse_delete_when(spec: &str) -> Result<Vec<u32>, String> {
    spec.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|h| match h.parse::<u32>() {
            Ok(v) if v < 24 => Ok(v),
            _ => Err(format!("`{h}` is not an hour of the day (00-23)")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_delay_levels() {
        let levels = message_delay_levels(&StoreConfig::new("/x").message_delay_level).unwrap();
        assert_eq!(levels.len(), 18);
        assert_eq!(levels[0], 1000);
        assert_eq!(levels[4], 60_000);
        assert_eq!(levels[17], 7_200_000);
        assert_eq!(message_delay_levels("2d").unwrap(), vec![172_800_000]);
        assert!(message_delay_levels("").is_err());
        assert!(message_delay_levels("5x").is_err());
        assert!(message_delay_levels("s").is_err());
        assert!(message_delay_levels("1.5s").is_err());
        assert!(message_delay_levels("5é").is_err());
    }

    #[test]
    fn delete_when_hours() {
        assert_eq!(parse_delete_when("04").unwrap(), vec![4]);
        assert_eq!(parse_delete_when("04;16").unwrap(), vec![4, 16]);
        assert!(parse_delete_when("25").is_err());
    }

    #[test]
    fn defaults_are_valid() {
        let c = StoreConfig::new("/tmp/x");
        assert_eq!(c.commit_log_dir, PathBuf::from("/tmp/x/commitlog"));
        c.validate().unwrap();
    }
}
