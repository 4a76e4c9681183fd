//! What the journal backends count, for `/metrics`: written by the journal
//! threads, read by the HTTP endpoint (atomics: neither waits for the other).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds of the group-commit size histogram (node batches per write).
pub const GROUP_BATCH_BUCKETS: [u64; 10] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000];

/// Upper bounds (µs) of the compaction-stall histogram.
pub const COMPACTION_STALL_BUCKETS_US: [u64; 10] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
];

/// Upper bounds (µs) of the local journal's write-time histogram.
pub const WRITE_BUCKETS_US: [u64; 13] = [
    100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000,
];

#[derive(Debug, Default)]
pub struct JournalMetrics {
    /// Pauses of the local journal's append loop for compaction (planning a
    /// job, applying its outcome, waiting for one): counts per bucket (not
    /// cumulative), the last above every bound; their sum and the longest.
    pub compaction_stalls: [AtomicU64; COMPACTION_STALL_BUCKETS_US.len() + 1],
    pub compaction_stall_sum_us: AtomicU64,
    pub compaction_stall_max_us: AtomicU64,
    /// The local journal's group commits, from the write's start to
    /// fdatasync's return: counts per bucket of `WRITE_BUCKETS_US` (not
    /// cumulative), the last above every bound; their sum and the longest.
    pub writes: [AtomicU64; WRITE_BUCKETS_US.len() + 1],
    pub write_sum_us: AtomicU64,
    pub write_max_us: AtomicU64,
    /// Group commits written (local: appends; Kafka: transactions committed).
    pub group_commits: AtomicU64,
    /// Node batches per group commit: counts per bucket (not cumulative),
    /// the last above every bound.
    pub group_batches: [AtomicU64; GROUP_BATCH_BUCKETS.len() + 1],
    pub group_batches_sum: AtomicU64,
    /// Key and value bytes of the records written.
    pub bytes_written: AtomicU64,
    /// `fdatasync` calls of the local journal (segment files).
    pub fsyncs: AtomicU64,
    /// Kafka journal transactions committed and aborted.
    pub kafka_commits: AtomicU64,
    pub kafka_aborts: AtomicU64,
    /// Records the Kafka hot standby copy is behind the journal's end (-1:
    /// not following, for example while live).
    pub standby_lag_records: AtomicI64,
    /// Mirroring (`crate::mirror`), -1 while this broker does not stream
    /// (not mirrored, or passive): the stream's groups some peer has not
    /// acknowledged (the newest written minus the least acknowledged over
    /// the configured peers): with `--mirror-sync false`, the window of
    /// loss if this broker died now.
    pub mirror_unacknowledged_groups: AtomicI64,
    /// Groups and bytes the outbox keeps for peers that are behind or away.
    pub mirror_outbox_groups: AtomicU64,
    pub mirror_outbox_bytes: AtomicU64,
    /// Peers whose link streams now.
    pub mirror_peers_streaming: AtomicU64,
    /// Durable answers the sync gate holds for in-sync peers.
    pub mirror_answers_held: AtomicU64,
    /// Journal snapshots sent to peers that were not in the stream.
    pub mirror_snapshots: AtomicU64,
}

impl JournalMetrics {
    pub fn new() -> JournalMetrics {
        let m = JournalMetrics::default();
        m.standby_lag_records.store(-1, Ordering::Relaxed);
        m.mirror_unacknowledged_groups.store(-1, Ordering::Relaxed);
        m
    }

    /// One group commit of `batches` node batches and `bytes` bytes.
    pub fn group_written(&self, batches: usize, bytes: u64) {
        let b = batches as u64;
        let i = GROUP_BATCH_BUCKETS.partition_point(|&bound| bound < b);
        self.group_batches[i].fetch_add(1, Ordering::Relaxed);
        self.group_batches_sum.fetch_add(b, Ordering::Relaxed);
        self.group_commits.fetch_add(1, Ordering::Relaxed);
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The append loop paused this long for compaction work.
    pub fn compaction_stall(&self, pause: std::time::Duration) {
        record(
            &COMPACTION_STALL_BUCKETS_US,
            &self.compaction_stalls,
            &self.compaction_stall_sum_us,
            &self.compaction_stall_max_us,
            pause,
        );
    }

    /// A local group commit took this long to write and fdatasync.
    pub fn group_write(&self, took: std::time::Duration) {
        record(
            &WRITE_BUCKETS_US,
            &self.writes,
            &self.write_sum_us,
            &self.write_max_us,
            took,
        );
    }
}

/// Counts `d` in the bucket of the first bound at or above it (the last
/// bucket: above every bound), and in the sum and the longest.
fn record(
    bounds: &[u64],
    counts: &[AtomicU64],
    sum_us: &AtomicU64,
    max_us: &AtomicU64,
    d: std::time::Duration,
) {
    debug_assert_eq!(counts.len(), bounds.len() + 1);
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let i = bounds.partition_point(|&bound| bound < us);
    counts[i].fetch_add(1, Ordering::Relaxed);
    sum_us.fetch_add(us, Ordering::Relaxed);
    max_us.fetch_max(us, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_sizes_land_in_their_bucket() {
        let m = JournalMetrics::new();
        m.group_written(1, 10);
        m.group_written(3, 10);
        m.group_written(5_000, 10);
        let got: Vec<u64> = m
            .group_batches
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(got[0], 1);
        assert_eq!(got[2], 1, "3 batches: at most 5");
        assert_eq!(got[GROUP_BATCH_BUCKETS.len()], 1);
        assert_eq!(m.group_batches_sum.load(Ordering::Relaxed), 5_004);
        assert_eq!(m.bytes_written.load(Ordering::Relaxed), 30);
        assert_eq!(m.standby_lag_records.load(Ordering::Relaxed), -1);
    }

    #[test]
    fn compaction_stalls_land_in_their_bucket() {
        let m = JournalMetrics::new();
        m.compaction_stall(std::time::Duration::from_micros(300));
        m.compaction_stall(std::time::Duration::from_millis(20));
        m.compaction_stall(std::time::Duration::from_millis(21));
        m.compaction_stall(std::time::Duration::from_secs(3));
        let got: Vec<u64> = m
            .compaction_stalls
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(got[0], 1, "0.3 ms: at most 1 ms");
        assert_eq!(got[4], 1, "20 ms: at most 20 ms");
        assert_eq!(got[5], 1, "21 ms: at most 50 ms");
        assert_eq!(got[COMPACTION_STALL_BUCKETS_US.len()], 1);
        assert_eq!(m.compaction_stall_max_us.load(Ordering::Relaxed), 3_000_000);
        assert_eq!(
            m.compaction_stall_sum_us.load(Ordering::Relaxed),
            300 + 20_000 + 21_000 + 3_000_000
        );
    }

    #[test]
    fn write_times_land_in_their_bucket() {
        let m = JournalMetrics::new();
        m.group_write(std::time::Duration::from_micros(100));
        m.group_write(std::time::Duration::from_micros(101));
        m.group_write(std::time::Duration::from_millis(15));
        let got: Vec<u64> = m.writes.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(got[0], 1, "0.1 ms: at most 0.1 ms");
        assert_eq!(got[1], 1, "0.101 ms: at most 0.2 ms");
        assert_eq!(got[7], 1, "15 ms: at most 20 ms");
        assert_eq!(got.iter().sum::<u64>(), 3);
        assert_eq!(m.write_max_us.load(Ordering::Relaxed), 15_000);
        assert_eq!(m.write_sum_us.load(Ordering::Relaxed), 15_201);
        assert_eq!(
            m.compaction_stalls
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum::<u64>(),
            0
        );
    }
}
