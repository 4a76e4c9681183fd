//! The local segment-file journal on the real disk.
//!
//! - `local_journal_append_fsync/N`: one `append` call carrying N single-entry
//!   batches (N producers' sends gathered by group commit), each entry a
//!   `MessageStored` with a 1 KiB body, then one `fdatasync`. N = 1 is the
//!   cost of an fsync per message; N = 256 shows what group commit buys.
//! - `local_journal_append_nofsync/N`: the same with `fsync: false`, which
//!   leaves framing, CRC and `pwrite` into the page cache.
//! - `local_journal_replay`: `open` (which verifies every batch) and
//!   `for_each_batch` over 100,000 such entries, with a warm page cache.
//!
//! Files go to `target/bench-tmp` (same disk as the build, not a tmpfs).
//! Message ids cycle over `KEY_SPACE`, so older segments die and are
//! compacted between samples (outside the timed region), which bounds the
//! disk space a run uses.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use halyard_benches::{bench_tmp_dir, raw_message_stored, WARM_UP_TIME};
use halyard_core::journal::decode_entry;
use halyard_io::local::{Entry, LocalJournal, LocalJournalConfig, BATCH_FRAME_BYTES};
use tempfile::TempDir;

/// Distinct message ids the append benches cycle through.
const KEY_SPACE: usize = 8192;
/// Messages per `append` call.
const GROUP_SIZES: [usize; 3] = [1, 16, 256];
/// Entries in the journal the replay bench reads.
const REPLAY_ENTRIES: usize = 100_000;
/// Single-entry batches per `append` call while building that journal.
const REPLAY_BUILD_CALL_BATCHES: usize = 1000;

fn tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(bench_tmp_dir())
        .expect("create bench dir under target/bench-tmp")
}

fn config(dir: &Path, fsync: bool) -> LocalJournalConfig {
    let mut c = LocalJournalConfig::new(dir);
    c.fsync = fsync;
    c
}

/// Bytes one single-entry batch takes on disk: frame, entry count, entry.
fn batch_disk_bytes(e: &Entry) -> u64 {
    BATCH_FRAME_BYTES
        + 4
        + 4
        + e.key.len() as u64
        + 1
        + 4
        + e.value.as_ref().map_or(0, |v| v.len()) as u64
}

/// `KEY_SPACE / group` append calls of `group` single-entry batches each.
fn append_calls(ring: &[Entry], group: usize) -> Vec<Vec<Vec<Entry>>> {
    ring.chunks_exact(group)
        .map(|call| call.iter().map(|e| vec![e.clone()]).collect())
        .collect()
}

fn bench_append(c: &mut Criterion) {
    let ring: Vec<Entry> = (0..KEY_SPACE as u64).map(raw_message_stored).collect();
    let per_message_bytes = batch_disk_bytes(&ring[0]);

    for fsync in [true, false] {
        let group_name = if fsync {
            "local_journal_append_fsync"
        } else {
            "local_journal_append_nofsync"
        };
        let mut g = c.benchmark_group(group_name);
        g.sample_size(20)
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(WARM_UP_TIME);
        for group in GROUP_SIZES {
            let calls = append_calls(&ring, group);
            let dir = tempdir(&format!("{group_name}-{group}-"));
            let (mut journal, _) =
                LocalJournal::open(config(dir.path(), fsync)).expect("open journal");
            g.throughput(Throughput::ElementsAndBytes {
                elements: group as u64,
                bytes: group as u64 * per_message_bytes,
            });
            let mut next = 0usize;
            g.bench_function(group.to_string(), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        journal.append(&calls[next]).expect("append");
                        next = (next + 1) % calls.len();
                    }
                    let elapsed = start.elapsed();
                    // Untimed: drop segments whose keys were all rewritten.
                    journal.compact().expect("compact");
                    elapsed
                })
            });
            let stats = journal.stats();
            if fsync {
                assert!(stats.fsyncs >= stats.batches_appended / group as u64);
            } else {
                assert_eq!(stats.fsyncs, 0);
            }
        }
        g.finish();
    }
}

fn bench_replay(c: &mut Criterion) {
    let dir = tempdir("local_journal_replay-");
    let cfg = config(dir.path(), false);
    {
        let (mut journal, _) = LocalJournal::open(cfg.clone()).expect("open journal");
        let batches: Vec<Vec<Entry>> = (0..REPLAY_ENTRIES as u64)
            .map(|seq| vec![raw_message_stored(seq)])
            .collect();
        for call in batches.chunks(REPLAY_BUILD_CALL_BATCHES) {
            journal.append(call).expect("append");
        }
        assert_eq!(journal.stats().entries_appended, REPLAY_ENTRIES as u64);
    }
    let bytes: u64 = std::fs::read_dir(dir.path())
        .expect("list journal dir")
        .map(|e| e.expect("dir entry").metadata().expect("metadata").len())
        .sum();

    let mut g = c.benchmark_group("local_journal_replay");
    // Each iteration reads about 110 MB twice: few, flat samples.
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(WARM_UP_TIME)
        .throughput(Throughput::ElementsAndBytes {
            elements: REPLAY_ENTRIES as u64,
            bytes,
        });
    g.bench_function("open_for_each_batch_100k", |b| {
        b.iter(|| {
            let (journal, recovery) = LocalJournal::open(cfg.clone()).expect("open journal");
            assert_eq!(recovery.truncated_bytes, 0);
            let mut entries = 0usize;
            journal
                .for_each_batch(|batch| entries += batch.len())
                .expect("read journal");
            assert_eq!(entries, REPLAY_ENTRIES);
            entries
        })
    });
    // What the node's loader does on top: decode every entry into a record.
    g.bench_function("open_for_each_batch_decode_100k", |b| {
        b.iter(|| {
            let (journal, _) = LocalJournal::open(cfg.clone()).expect("open journal");
            let mut entries = 0usize;
            journal
                .for_each_batch(|batch| {
                    for raw in batch {
                        let e = decode_entry(&raw.key, raw.value.as_deref()).expect("decode");
                        std::hint::black_box(&e);
                        entries += 1;
                    }
                })
                .expect("read journal");
            assert_eq!(entries, REPLAY_ENTRIES);
            entries
        })
    });
    g.finish();
}

criterion_group!(benches, bench_append, bench_replay);
criterion_main!(benches);
