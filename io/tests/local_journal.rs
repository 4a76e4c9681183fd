//! Tests of the local segment-file journal: round trips, torn tails,
//! corruption, group commit, compaction and cleaning (with a model-based
//! proptest and crash simulations).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use halyard_io::local::{
    segment_file_name, Entry, LocalJournal, LocalJournalConfig, LocalJournalError,
    BATCH_FRAME_BYTES, CLEAN_MIN_SEGMENTS, KEY_BYTES_MAX, SEGMENT_HEADER_BYTES,
};
use proptest::prelude::*;

fn config(dir: &Path, segment_bytes: u64) -> LocalJournalConfig {
    LocalJournalConfig {
        dir: dir.to_path_buf(),
        segment_bytes,
        fsync: false,
    }
}

fn open(cfg: &LocalJournalConfig) -> LocalJournal {
    LocalJournal::open(cfg.clone()).expect("open journal").0
}

fn put(key: &str, value: &str) -> Entry {
    Entry::put(
        Bytes::copy_from_slice(key.as_bytes()),
        Bytes::copy_from_slice(value.as_bytes()),
    )
}

fn del(key: &str) -> Entry {
    Entry::tombstone(Bytes::copy_from_slice(key.as_bytes()))
}

/// A batch whose size and content vary with `i`, tombstones included.
fn sample_batch(i: usize) -> Vec<Entry> {
    (0..1 + i % 4)
        .map(|j| {
            let key = format!("key-{}", (i * 7 + j) % 50);
            if matches!((i + j) % 5, 0) {
                del(&key)
            } else {
                put(&key, &"v".repeat((i * 13 + j) % 90))
            }
        })
        .collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list journal folder")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}

/// Latest value per key, tombstones removing the key.
fn latest_view(batches: &[Vec<Entry>]) -> BTreeMap<Bytes, Bytes> {
    let mut view = BTreeMap::new();
    for e in batches.iter().flatten() {
        match &e.value {
            Some(v) => view.insert(e.key.clone(), v.clone()),
            None => view.remove(&e.key),
        };
    }
    view
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create copy");
    for f in segment_files(from) {
        fs::copy(&f, to.join(f.file_name().expect("name"))).expect("copy segment");
    }
}

/// Parses a segment by the layout documented in the module, independently of
/// the journal's own decoder: returns the (offset, frame length) of each batch.
fn parse_frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    assert_eq!(&bytes[0..8], b"HLYDJSEG", "magic");
    let mut frames = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES as usize;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        frames.push((at, 8 + len));
        at += 8 + len;
    }
    assert_eq!(at, bytes.len(), "frames end exactly at the end of the file");
    frames
}

#[test]
fn round_trip_across_many_segments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), 512);
    let (mut journal, recovery) = LocalJournal::open(cfg.clone()).expect("open");
    assert_eq!(recovery.batches, 0);

    let mut written = Vec::new();
    let mut i = 0;
    while i < 300 {
        // Group commits of 1..=5 batches, one of them empty, one oversized.
        let group: Vec<Vec<Entry>> = (i..i + 1 + i % 5).map(sample_batch).collect();
        i += group.len();
        journal.append(&group).expect("append");
        written.extend(group);
    }
    let empty_and_big = vec![vec![], vec![put("big", &"x".repeat(2000))]];
    journal.append(&empty_and_big).expect("append oversized");
    written.extend(empty_and_big);
    journal
        .append(&[sample_batch(1)])
        .expect("append after oversized");
    written.push(sample_batch(1));

    let stats = journal.stats();
    assert!(
        stats.segments > 10,
        "expected many segments, got {}",
        stats.segments
    );
    assert_eq!(stats.batches_appended, written.len() as u64);
    assert_eq!(journal.read_all().expect("read"), written);
    assert_eq!(stats.live_entries, latest_view(&written).len() as u64);
    drop(journal);

    let (journal, recovery) = LocalJournal::open(cfg.clone()).expect("reopen");
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(recovery.batches, written.len() as u64);
    assert_eq!(recovery.segments, stats.segments);
    assert_eq!(recovery.bytes, stats.bytes);
    assert_eq!(journal.read_all().expect("read after reopen"), written);
    let mut streamed = Vec::new();
    journal
        .for_each_batch(|b| streamed.push(b.to_vec()))
        .expect("for_each_batch");
    assert_eq!(streamed, written);
    assert_eq!(journal.stats().live_entries, stats.live_entries);

    // No batch spans segments; a segment over the limit holds one batch only.
    let mut total_frames = 0;
    for f in segment_files(tmp.path()) {
        let bytes = fs::read(&f).expect("read segment");
        let frames = parse_frames(&bytes);
        total_frames += frames.len();
        if bytes.len() as u64 > cfg.segment_bytes {
            assert_eq!(
                frames.len(),
                1,
                "{} is oversized but holds several batches",
                f.display()
            );
        }
    }
    assert_eq!(total_frames, written.len());
}

#[test]
fn on_disk_format_matches_the_documentation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut journal, _) = LocalJournal::open(config(tmp.path(), 1 << 20)).expect("open");
    journal
        .append(&[vec![put("k", "vv"), del("t")]])
        .expect("append");
    drop(journal);

    let files = segment_files(tmp.path());
    assert_eq!(files.len(), 1);
    assert_eq!(
        files[0].file_name().and_then(|n| n.to_str()),
        Some("00000000000000000001.seg")
    );
    let bytes = fs::read(&files[0]).expect("read");
    let mut expected_header = Vec::new();
    expected_header.extend_from_slice(b"HLYDJSEG");
    expected_header.extend_from_slice(&1u32.to_le_bytes()); // version
    expected_header.extend_from_slice(&0u32.to_le_bytes()); // replaces
    expected_header.extend_from_slice(&1u64.to_le_bytes()); // segment id
    assert_eq!(&bytes[..24], &expected_header[..]);

    let mut payload = Vec::new();
    payload.extend_from_slice(&2u32.to_le_bytes());
    payload.extend_from_slice(&1u32.to_le_bytes());
    payload.extend_from_slice(b"k");
    payload.push(1);
    payload.extend_from_slice(&2u32.to_le_bytes());
    payload.extend_from_slice(b"vv");
    payload.extend_from_slice(&1u32.to_le_bytes());
    payload.extend_from_slice(b"t");
    payload.push(0);
    payload.extend_from_slice(&0u32.to_le_bytes());
    let mut frame = Vec::new();
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    assert_eq!(&bytes[24..], &frame[..]);
}

/// A journal of `n` batches over several segments; returns the batches and
/// the offset and length of the final batch in the last segment.
fn journal_with_final_batch(dir: &Path, n: usize) -> (Vec<Vec<Entry>>, PathBuf, u64, u64) {
    let cfg = config(dir, 400);
    let mut journal = open(&cfg);
    let mut batches = Vec::new();
    for i in 0..n - 1 {
        batches.push(sample_batch(i));
        journal.append(&batches[i..]).expect("append");
    }
    let last_file = segment_files(dir).pop().expect("a segment");
    let before = fs::metadata(&last_file).expect("stat").len();
    let last = vec![
        put("final-a", "hello"),
        del("key-3"),
        put("final-b", "world!"),
    ];
    batches.push(last);
    journal.append(&batches[n - 1..]).expect("append final");
    drop(journal);
    assert_eq!(
        segment_files(dir).pop().as_ref(),
        Some(&last_file),
        "final batch must not roll"
    );
    let after = fs::metadata(&last_file).expect("stat").len();
    assert!(segment_files(dir).len() > 1, "want several segments");
    (batches, last_file, before, after - before)
}

/// Reopens a damaged copy: it must hold exactly `kept`, report the cut, take
/// a new append and keep it across another reopen.
fn check_recovers(dir: &Path, kept: &[Vec<Entry>], expected_truncated: u64) {
    let cfg = config(dir, 400);
    let (mut journal, recovery) = LocalJournal::open(cfg.clone()).expect("open damaged journal");
    assert_eq!(recovery.truncated_bytes, expected_truncated);
    assert_eq!(recovery.batches, kept.len() as u64);
    assert_eq!(journal.read_all().expect("read"), kept);
    let extra = vec![put("after", "recovery")];
    journal
        .append(std::slice::from_ref(&extra))
        .expect("append after recovery");
    drop(journal);
    let (journal, recovery) = LocalJournal::open(cfg).expect("reopen");
    assert_eq!(recovery.truncated_bytes, 0);
    let mut want = kept.to_vec();
    want.push(extra);
    assert_eq!(journal.read_all().expect("read"), want);
}

#[test]
fn torn_tail_at_every_offset_is_cut_off() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pristine = tmp.path().join("pristine");
    let (batches, last_file, start, len) = journal_with_final_batch(&pristine, 12);
    let name = last_file.file_name().expect("name");
    for cut in 1..len {
        let dir = tmp.path().join(format!("cut-{cut}"));
        copy_dir(&pristine, &dir);
        let f = fs::OpenOptions::new()
            .write(true)
            .open(dir.join(name))
            .expect("open segment");
        f.set_len(start + cut).expect("truncate");
        drop(f);
        check_recovers(&dir, &batches[..batches.len() - 1], cut);
        fs::remove_dir_all(&dir).expect("clean up");
    }
    // Cutting exactly at the batch boundary leaves a clean journal.
    let dir = tmp.path().join("boundary");
    copy_dir(&pristine, &dir);
    fs::OpenOptions::new()
        .write(true)
        .open(dir.join(name))
        .and_then(|f| f.set_len(start))
        .expect("truncate");
    check_recovers(&dir, &batches[..batches.len() - 1], 0);
}

#[test]
fn flipped_byte_in_final_batch_is_cut_off() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pristine = tmp.path().join("pristine");
    let (batches, last_file, start, len) = journal_with_final_batch(&pristine, 12);
    let name = last_file.file_name().expect("name");
    for at in 0..len {
        let dir = tmp.path().join(format!("flip-{at}"));
        copy_dir(&pristine, &dir);
        let path = dir.join(name);
        let mut bytes = fs::read(&path).expect("read");
        bytes[(start + at) as usize] ^= 0x20;
        fs::write(&path, &bytes).expect("write");
        check_recovers(&dir, &batches[..batches.len() - 1], len);
        fs::remove_dir_all(&dir).expect("clean up");
    }
}

#[test]
fn garbage_after_the_final_batch_is_cut_off() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (batches, last_file, _, _) = journal_with_final_batch(tmp.path(), 6);
    // Zeros, as a crash can leave when the size reached disk but data did not.
    let mut bytes = fs::read(&last_file).expect("read");
    bytes.extend_from_slice(&[0u8; 100]);
    fs::write(&last_file, &bytes).expect("write");
    // Counted apart from torn bytes: a zero-filled segment ends the same way.
    let (_, recovery) = LocalJournal::open(config(tmp.path(), 400)).expect("open");
    assert_eq!(
        (recovery.truncated_bytes, recovery.zero_bytes_cut),
        (0, 100)
    );
    check_recovers(tmp.path(), &batches, 0);
}

#[test]
fn torn_header_of_a_new_last_segment_is_repaired() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (batches, last_file, _, _) = journal_with_final_batch(tmp.path(), 6);
    let last_name = last_file
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name");
    let next_id: u64 = last_name
        .trim_end_matches(".seg")
        .parse::<u64>()
        .expect("id")
        + 1;
    // A crash right after creating the next segment: 10 bytes of its header.
    let header = fs::read(&last_file).expect("read")[..10].to_vec();
    fs::write(tmp.path().join(segment_file_name(next_id)), &header).expect("write");
    check_recovers(tmp.path(), &batches, 10);
}

#[test]
fn corrupt_batch_in_an_older_segment_fails_open() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, _, _, _) = journal_with_final_batch(tmp.path(), 20);
    let first = segment_files(tmp.path()).remove(0);
    let mut bytes = fs::read(&first).expect("read");
    let frames = parse_frames(&bytes);
    assert!(
        frames.len() >= 2,
        "want a batch in the middle of the first segment"
    );
    let (offset, _) = frames[frames.len() / 2];
    bytes[offset + 12] ^= 0xff; // inside the payload
    fs::write(&first, &bytes).expect("write");

    let err = LocalJournal::open(config(tmp.path(), 400)).expect_err("open must fail");
    let msg = err.to_string();
    assert!(
        matches!(&err, LocalJournalError::CorruptBatch { file, offset: o, .. }
            if file == "00000000000000000001.seg" && *o == offset as u64),
        "unexpected error: {msg}"
    );
    assert!(
        msg.starts_with(&format!(
            "corrupt batch at 00000000000000000001.seg offset {offset}: crc mismatch"
        )),
        "unclear message: {msg}"
    );
    // Nothing was cut: the file is untouched.
    assert_eq!(fs::read(&first).expect("read"), bytes);
}

#[test]
fn torn_end_of_an_older_segment_fails_open() {
    let tmp = tempfile::tempdir().expect("tempdir");
    journal_with_final_batch(tmp.path(), 20);
    let first = segment_files(tmp.path()).remove(0);
    let len = fs::metadata(&first).expect("stat").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .and_then(|f| f.set_len(len - 3))
        .expect("truncate");
    let err = LocalJournal::open(config(tmp.path(), 400)).expect_err("open must fail");
    assert!(
        matches!(err, LocalJournalError::CorruptBatch { .. }),
        "{err}"
    );
}

#[test]
fn foreign_header_on_the_last_segment_is_an_error_not_a_torn_tail() {
    let tmp = tempfile::tempdir().expect("tempdir");
    journal_with_final_batch(tmp.path(), 6);
    let last = segment_files(tmp.path()).pop().expect("segment");
    let mut bytes = fs::read(&last).expect("read");
    bytes[8] = 9; // format version 9
    fs::write(&last, &bytes).expect("write");
    let err = LocalJournal::open(config(tmp.path(), 400)).expect_err("open must fail");
    assert!(
        matches!(err, LocalJournalError::BadSegmentHeader { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("unsupported format version 9"),
        "{err}"
    );
    assert_eq!(fs::read(&last).expect("read"), bytes, "file left untouched");
}

#[test]
fn group_commit_fsyncs_once_per_append() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = LocalJournalConfig::new(tmp.path());
    assert!(cfg.fsync, "fsync is the default");
    let (mut journal, _) = LocalJournal::open(cfg.clone()).expect("open");
    let before = journal.stats();

    let group: Vec<Vec<Entry>> = (0..50).map(sample_batch).collect();
    journal.append(&group).expect("append");
    let after = journal.stats();
    assert_eq!(after.fsyncs - before.fsyncs, 1, "one fsync for 50 batches");
    assert_eq!(after.batches_appended - before.batches_appended, 50);

    journal.append(&[sample_batch(7)]).expect("append one");
    assert_eq!(journal.stats().fsyncs - after.fsyncs, 1);
    journal.append(&[]).expect("append nothing");
    assert_eq!(journal.stats().fsyncs - after.fsyncs, 1, "nothing to sync");
    drop(journal);

    let (journal, recovery) = LocalJournal::open(cfg).expect("reopen");
    assert_eq!(recovery.batches, 51);
    assert_eq!(journal.read_all().expect("read").len(), 51);
}

#[test]
fn rejected_batch_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), 1 << 20);
    let mut journal = open(&cfg);
    journal.append(&[vec![put("a", "1")]]).expect("append");
    let bytes = journal.stats().bytes;
    let too_long = Entry::tombstone(Bytes::from(vec![b'k'; KEY_BYTES_MAX + 1]));
    let err = journal
        .append(&[vec![put("b", "2")], vec![too_long]])
        .expect_err("must reject");
    assert!(
        matches!(err, LocalJournalError::BatchRejected { batch: 1, .. }),
        "{err}"
    );
    assert_eq!(journal.stats().bytes, bytes);
    journal
        .append(&[vec![put("c", "3")]])
        .expect("append after rejection");
    drop(journal);
    let journal = open(&cfg);
    assert_eq!(
        journal.read_all().expect("read"),
        vec![vec![put("a", "1")], vec![put("c", "3")]]
    );
}

/// Appends `batch` and then filler batches until the journal rolls, so the
/// batch ends up in a sealed segment.
fn append_and_seal(journal: &mut LocalJournal, batch: Vec<Entry>, written: &mut Vec<Vec<Entry>>) {
    let segments = journal.stats().segments;
    journal
        .append(std::slice::from_ref(&batch))
        .expect("append");
    written.push(batch);
    let mut n = 0;
    while journal.stats().segments == segments {
        let filler = vec![put("filler", &format!("{n}"))];
        journal
            .append(std::slice::from_ref(&filler))
            .expect("append filler");
        written.push(filler);
        n += 1;
    }
}

#[test]
fn compaction_deletes_dead_segments_and_keeps_the_latest_view() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), 300);
    let mut journal = open(&cfg);
    let mut written = Vec::new();
    for round in 0..3 {
        for k in 0..20 {
            let batch = vec![put(
                &format!("k{k}"),
                &format!("round {round} {}", "x".repeat(20)),
            )];
            journal
                .append(std::slice::from_ref(&batch))
                .expect("append");
            written.push(batch);
        }
    }
    for k in 0..10 {
        let batch = vec![del(&format!("k{k}"))];
        journal
            .append(std::slice::from_ref(&batch))
            .expect("append");
        written.push(batch);
    }
    let expected = latest_view(&written);
    assert_eq!(expected.len(), 10);
    let before = journal.stats();
    let files_before = segment_files(tmp.path());

    let compacted = journal.compact().expect("compact");
    assert!(compacted.segments_deleted >= 3, "{compacted:?}");
    assert!(compacted.bytes_reclaimed > 0);
    let after = journal.stats();
    assert_eq!(after.segments, before.segments - compacted.segments_deleted);
    assert_eq!(
        segment_files(tmp.path()).len(),
        files_before.len() - compacted.segments_deleted
    );
    assert!(
        !files_before[0].exists(),
        "the oldest segment only held superseded entries"
    );
    assert_eq!(latest_view(&journal.read_all().expect("read")), expected);
    assert_eq!(after.live_entries, 10);
    // A second compaction right away finds nothing new.
    assert_eq!(
        journal.compact().expect("compact again").segments_deleted,
        0
    );
    drop(journal);

    let (journal, recovery) = LocalJournal::open(cfg).expect("reopen");
    assert_eq!(recovery.segments, after.segments);
    assert_eq!(latest_view(&journal.read_all().expect("read")), expected);
    assert_eq!(journal.stats().live_entries, 10);
}

#[test]
fn segment_with_one_live_entry_is_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), 200);
    let mut journal = open(&cfg);
    let mut written = Vec::new();
    append_and_seal(
        &mut journal,
        vec![put("a", "1"), put("b", "1"), put("keep", "1")],
        &mut written,
    );
    let first = segment_files(tmp.path()).remove(0);
    append_and_seal(&mut journal, vec![put("a", "2"), del("b")], &mut written);

    journal.compact().expect("compact");
    assert!(first.exists(), "segment 1 still holds the live `keep`");
    assert_eq!(
        latest_view(&journal.read_all().expect("read")),
        latest_view(&written)
    );

    append_and_seal(&mut journal, vec![put("keep", "2")], &mut written);
    let stats = journal.compact().expect("compact");
    assert!(!first.exists(), "segment 1 is all dead now");
    assert!(stats.segments_deleted >= 1);
    drop(journal);
    let journal = open(&cfg);
    assert_eq!(
        latest_view(&journal.read_all().expect("read")),
        latest_view(&written)
    );
}

#[test]
fn tombstone_outlives_the_older_segment_holding_its_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), 200);
    let mut journal = open(&cfg);
    let mut written = Vec::new();
    // Segment 1: `a` (to be deleted) and `x` (stays live).
    append_and_seal(
        &mut journal,
        vec![put("a", "1"), put("x", "1")],
        &mut written,
    );
    // Segment 2: the tombstone of `a`, and fillers superseded later.
    append_and_seal(&mut journal, vec![del("a")], &mut written);
    // Supersede every filler so only the tombstone could keep segment 2.
    for _ in 0..3 {
        append_and_seal(&mut journal, vec![], &mut written);
    }
    let segment_2 = tmp.path().join(segment_file_name(2));
    assert!(segment_2.exists());
    journal.compact().expect("compact");
    assert!(
        segment_2.exists(),
        "deleting it would resurrect `a` from segment 1"
    );
    drop(journal);
    let mut journal = open(&cfg);
    let view = latest_view(&journal.read_all().expect("read"));
    assert!(
        !view.contains_key(&Bytes::from_static(b"a")),
        "a resurrected"
    );

    // Once `x` moves on, segment 1 goes, and then the tombstone can go too.
    append_and_seal(&mut journal, vec![put("x", "2")], &mut written);
    journal.compact().expect("compact");
    assert!(!tmp.path().join(segment_file_name(1)).exists());
    assert!(!segment_2.exists());
    assert_eq!(
        latest_view(&journal.read_all().expect("read")),
        latest_view(&written)
    );
}

#[test]
fn compaction_is_crash_safe_at_every_deletion_prefix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let live = tmp.path().join("live");
    let cfg = config(&live, 150);
    let mut journal = open(&cfg);
    for i in 0..200usize {
        let key = format!("k{}", i % 9);
        let e = if i % 4 == 3 {
            del(&key)
        } else {
            put(&key, &format!("{i}"))
        };
        journal.append(&[vec![e]]).expect("append");
    }
    let expected = latest_view(&journal.read_all().expect("read"));
    let snapshot = tmp.path().join("snapshot");
    copy_dir(&live, &snapshot);
    let before: BTreeSet<PathBuf> = segment_files(&live)
        .into_iter()
        .map(|p| p.file_name().expect("n").into())
        .collect();
    let stats = journal.compact().expect("compact");
    assert!(stats.segments_deleted > 3, "{stats:?}");
    assert_eq!(stats.segments_cleaned, 0, "this test covers deletion only");
    let after: BTreeSet<PathBuf> = segment_files(&live)
        .into_iter()
        .map(|p| p.file_name().expect("n").into())
        .collect();
    let deleted: Vec<&PathBuf> = before.difference(&after).collect(); // ascending ids
    for prefix in 0..=deleted.len() {
        let dir = tmp.path().join(format!("crash-{prefix}"));
        copy_dir(&snapshot, &dir);
        for name in &deleted[..prefix] {
            fs::remove_file(dir.join(name)).expect("remove");
        }
        let journal = open(&config(&dir, 150));
        assert_eq!(
            latest_view(&journal.read_all().expect("read")),
            expected,
            "view changed after a crash with {prefix} of {} deletions done",
            deleted.len()
        );
    }
}

/// Keys of the live puts in the order of their latest entries: what a
/// replay ends with, order included. Entries a crash during a cleaning
/// leaves twice do not change it.
fn latest_order(batches: &[Vec<Entry>]) -> Vec<Bytes> {
    let mut last: BTreeMap<Bytes, (usize, bool)> = BTreeMap::new();
    for (i, e) in batches.iter().flatten().enumerate() {
        last.insert(e.key.clone(), (i, e.value.is_some()));
    }
    let mut live: Vec<(usize, Bytes)> = last
        .into_iter()
        .filter(|(_, (_, is_put))| *is_put)
        .map(|(k, (i, _))| (i, k))
        .collect();
    live.sort();
    live.into_iter().map(|(_, k)| k).collect()
}

/// Bytes `batches` take on disk, frames included.
fn disk_bytes(batches: &[Vec<Entry>]) -> u64 {
    batches
        .iter()
        .map(|b| {
            BATCH_FRAME_BYTES
                + 4
                + b.iter()
                    .map(|e| 9 + e.key.len() + e.value.as_ref().map_or(0, |v| v.len()))
                    .sum::<usize>() as u64
        })
        .sum()
}

/// Appends like the broker's journal thread: one call at a time, compacting
/// every `compact_every` calls.
struct Workload {
    written: Vec<Vec<Entry>>,
    calls: usize,
    compact_every: Option<usize>,
    max_segments: usize,
}

impl Workload {
    fn append(&mut self, journal: &mut LocalJournal, batches: Vec<Vec<Entry>>) {
        journal.append(&batches).expect("append");
        self.written.extend(batches);
        self.calls += 1;
        if self
            .compact_every
            .is_some_and(|n| self.calls.is_multiple_of(n))
        {
            journal.compact().expect("compact");
            assert_eq!(journal.check_index(), Ok(()));
        }
        self.max_segments = self.max_segments.max(journal.stats().segments);
    }
}

/// The broker's pattern: permanent records (`activation`, `q/orders`) in the
/// very first batch, then per message a put of `m/i` when stored, a put of
/// `r/i/orders` three messages later when acknowledged, and tombstones of
/// both four messages after that: in one batch, in two batches of one
/// group commit, or in two appends two messages apart, so they straddle
/// segment boundaries. Messages in `keep` are never consumed; with `drain`
/// false the last few messages are left half consumed.
fn broker_workload(
    journal: &mut LocalJournal,
    messages: usize,
    keep: &[usize],
    drain: bool,
    compact_every: Option<usize>,
) -> Workload {
    let mut w = Workload {
        written: Vec::new(),
        calls: 0,
        compact_every,
        max_segments: 0,
    };
    w.append(
        journal,
        vec![vec![
            put("activation", "epoch 1"),
            put("q/orders", "durable anycast queue"),
        ]],
    );
    let body = "b".repeat(200);
    let consumed = |j: usize| j < messages && !keep.contains(&j);
    let steps = if drain { messages + 10 } else { messages };
    for i in 0..steps {
        if i < messages {
            w.append(journal, vec![vec![put(&format!("m/{i}"), &body)]]);
        }
        if let Some(j) = i.checked_sub(3).filter(|j| consumed(*j)) {
            w.append(journal, vec![vec![put(&format!("r/{j}/orders"), "acked")]]);
        }
        if let Some(j) = i.checked_sub(7).filter(|j| consumed(*j)) {
            let (m, r) = (format!("m/{j}"), format!("r/{j}/orders"));
            match j % 3 {
                0 => w.append(journal, vec![vec![del(&m), del(&r)]]),
                1 => w.append(journal, vec![vec![del(&m)], vec![del(&r)]]),
                _ => w.append(journal, vec![vec![del(&r)]]),
            }
        }
        if let Some(j) = i.checked_sub(9).filter(|j| consumed(*j) && j % 3 == 2) {
            w.append(journal, vec![vec![del(&format!("m/{j}"))]]);
        }
    }
    w
}

fn keys(names: &[&str]) -> Vec<Bytes> {
    names
        .iter()
        .map(|k| Bytes::copy_from_slice(k.as_bytes()))
        .collect()
}

/// Compacts until a call changes nothing; returns the calls that did work.
fn compact_until_settled(journal: &mut LocalJournal) -> usize {
    for calls in 0..10 {
        let stats = journal.compact().expect("compact");
        if stats.segments_deleted == 0 && stats.segments_cleaned == 0 {
            return calls;
        }
    }
    panic!("compaction keeps finding work");
}

#[test]
fn broker_pattern_is_cleaned_down_to_a_few_segments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), 2048);
    let mut journal = open(&cfg);
    let w = broker_workload(&mut journal, 600, &[], true, Some(16));
    let written_bytes = disk_bytes(&w.written);
    assert!(
        written_bytes > 80 * cfg.segment_bytes,
        "the workload must span many segments"
    );
    for _ in 0..3 {
        journal.compact().expect("compact");
    }
    let stats = journal.stats();
    assert!(
        stats.segments <= 3,
        "everything was consumed but {} segments remain",
        stats.segments
    );
    assert!(
        stats.bytes * 20 < written_bytes,
        "{} bytes left of {written_bytes} written",
        stats.bytes
    );
    assert!(
        w.max_segments <= 3 + CLEAN_MIN_SEGMENTS,
        "the journal grew to {} segments while consumers kept up",
        w.max_segments
    );
    assert!(
        stats.tracked_keys < 60,
        "the index still tracks {} keys (1202 were written)",
        stats.tracked_keys
    );
    assert!(
        stats.cleanings > 0 && stats.bytes_reclaimed > 0,
        "{stats:?}"
    );
    assert_eq!(stats.live_entries, 2);

    let expected = latest_view(&w.written);
    let want: Vec<Bytes> = keys(&["activation", "q/orders"]);
    assert_eq!(
        expected.keys().cloned().collect::<BTreeSet<_>>(),
        want.iter().cloned().collect()
    );
    assert_eq!(latest_view(&journal.read_all().expect("read")), expected);
    drop(journal);

    let (journal, recovery) = LocalJournal::open(cfg).expect("reopen");
    assert_eq!(recovery.segments, stats.segments);
    let batches = journal.read_all().expect("read after reopen");
    assert_eq!(latest_view(&batches), expected);
    assert_eq!(latest_order(&batches), want);
    assert!(
        latest_view(&batches).keys().all(|k| !k.starts_with(b"m/")),
        "no message is left"
    );
}

#[test]
fn long_lived_message_in_the_first_segment_keeps_its_place() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), 2048);
    let mut journal = open(&cfg);
    let w = broker_workload(&mut journal, 600, &[0, 590], true, Some(16));
    compact_until_settled(&mut journal);
    let stats = journal.stats();
    assert!(stats.segments <= 3, "{} segments remain", stats.segments);
    assert!(stats.bytes * 20 < disk_bytes(&w.written));

    let want = keys(&["activation", "q/orders", "m/0", "m/590"]);
    assert_eq!(latest_order(&w.written), want);
    let check = |journal: &LocalJournal| {
        let batches = journal.read_all().expect("read");
        assert_eq!(latest_view(&batches), latest_view(&w.written));
        assert_eq!(latest_order(&batches), want, "replay order changed");
        // The oldest segment is still the first one, now holding only what
        // lives: the permanent records, then message 0, in their batches.
        assert_eq!(batches[0], w.written[0]);
        assert_eq!(batches[1], vec![put("m/0", &"b".repeat(200))]);
        let first = tmp.path().join(segment_file_name(1));
        let bytes = fs::read(&first).expect("segment 1 still exists");
        assert!(bytes.windows(3).any(|x| x == b"m/0"), "m/0 left segment 1");
    };
    check(&journal);
    drop(journal);
    let journal = open(&cfg);
    check(&journal);
}

/// Whether `replay` is `history` with some entries left out: nothing
/// repeated, nothing reordered. Greedy matching decides it exactly.
fn is_subsequence(replay: &[Vec<Entry>], history: &[Vec<Entry>]) -> bool {
    let mut history = history.iter().flatten();
    replay
        .iter()
        .flatten()
        .all(|e| history.by_ref().any(|h| h == e))
}

/// Replays `dir` after a simulated crash: the latest-per-key view and its
/// order must be `expected`, and the replay must be `expected` with entries
/// left out (a crash mid-cleaning must not replay old entries after the
/// cleaned ones); then compaction must settle and keep all that.
fn check_crash_state(dir: &Path, segment_bytes: u64, expected: &[Vec<Entry>], what: &str) {
    let cfg = config(dir, segment_bytes);
    let mut journal = open(&cfg);
    let leftovers: Vec<_> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".cleaning"))
        .collect();
    assert!(leftovers.is_empty(), "{what}: open left {leftovers:?}");
    let batches = journal.read_all().expect("read");
    assert!(
        is_subsequence(&batches, expected),
        "{what}: the replay repeats or reorders entries"
    );
    assert_eq!(
        latest_view(&batches),
        latest_view(expected),
        "{what}: view changed"
    );
    assert_eq!(journal.check_index(), Ok(()), "{what}");
    assert_eq!(
        latest_order(&batches),
        latest_order(expected),
        "{what}: order changed"
    );
    compact_until_settled(&mut journal);
    let batches = journal.read_all().expect("read after compaction");
    assert!(
        is_subsequence(&batches, expected),
        "{what}: after compaction the replay repeats or reorders entries"
    );
    assert_eq!(
        latest_view(&batches),
        latest_view(expected),
        "{what}: view after compaction"
    );
    assert_eq!(
        latest_order(&batches),
        latest_order(expected),
        "{what}: order after compaction"
    );
    drop(journal);
    let journal = open(&cfg);
    let batches = journal.read_all().expect("read after reopen");
    assert_eq!(
        latest_view(&batches),
        latest_view(expected),
        "{what}: view after reopen"
    );
}

#[test]
fn every_crash_state_of_a_cleaning_replays_to_the_same_view() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let live = tmp.path().join("live");
    let segment_bytes = 2048;
    let mut journal = open(&config(&live, segment_bytes));
    // No compaction while writing: one cleaning of a long prefix at the end,
    // with a long-lived message in it and half-consumed messages after it.
    let w = broker_workload(&mut journal, 300, &[2, 150], false, None);
    let snapshot = tmp.path().join("snapshot");
    copy_dir(&live, &snapshot);
    let before = segment_files(&live);
    let stats = journal.compact().expect("compact");
    assert_eq!(
        stats.segments_deleted, 0,
        "the chain pins every segment: {stats:?}"
    );
    assert!(stats.segments_cleaned >= CLEAN_MIN_SEGMENTS, "{stats:?}");
    assert_eq!(
        stats.segments_cleaned,
        before.len() - 1,
        "the whole sealed prefix"
    );
    drop(journal);

    let name = |p: &PathBuf| p.file_name().expect("name").to_owned();
    let s0 = name(&before[0]);
    let cleaned_s0 = fs::read(live.join(&s0)).expect("cleaned segment keeps the first id");
    assert!(cleaned_s0.len() < fs::metadata(&before[0]).expect("stat").len() as usize * 4);
    let rest: Vec<_> = before[1..before.len() - 1].iter().map(name).collect();
    let tmp_name = format!("{}.cleaning", s0.to_string_lossy());

    let state = |label: &str| {
        let dir = tmp.path().join(label);
        copy_dir(&snapshot, &dir);
        dir
    };
    // Before the rename: an unfinished or finished output next to the old
    // files.
    for (label, len) in [
        ("leftover-header", SEGMENT_HEADER_BYTES as usize),
        ("leftover-partial", cleaned_s0.len() / 2),
        ("leftover-complete", cleaned_s0.len()),
    ] {
        let dir = state(label);
        fs::write(dir.join(&tmp_name), &cleaned_s0[..len]).expect("write leftover");
        check_crash_state(&dir, segment_bytes, &w.written, label);
    }
    // After the rename: the cleaned S0, then a suffix of the old prefix.
    for deleted in 0..=rest.len() {
        let label = format!("renamed-{deleted}-deleted");
        let dir = state(&label);
        fs::write(dir.join(&s0), &cleaned_s0).expect("rename");
        for n in &rest[..deleted] {
            fs::remove_file(dir.join(n)).expect("delete");
        }
        check_crash_state(&dir, segment_bytes, &w.written, &label);
    }
}

#[test]
fn compaction_survives_a_crash_at_every_step() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pristine = tmp.path().join("pristine");
    let segment_bytes = 1024;
    let mut journal = open(&config(&pristine, segment_bytes));
    // Some segments wholly dead (deleted first), then a cleaning.
    let mut w = broker_workload(&mut journal, 120, &[1], false, None);
    for i in 0..40 {
        let batch = vec![put("churn", &format!("{i:0>150}"))];
        journal
            .append(std::slice::from_ref(&batch))
            .expect("append churn");
        w.written.push(batch);
    }
    drop(journal);
    let mut finished = false;
    let mut crashes = 0;
    for steps in 0..500 {
        let dir = tmp.path().join(format!("crash-{steps}"));
        copy_dir(&pristine, &dir);
        let mut journal = open(&config(&dir, segment_bytes));
        journal.simulate_crash_in_next_compact(steps);
        match journal.compact() {
            Ok(stats) => {
                assert!(
                    stats.segments_deleted > 0 && stats.segments_cleaned > 0,
                    "{stats:?}"
                );
                finished = true;
            }
            Err(LocalJournalError::Poisoned { .. }) => {
                crashes += 1;
                assert!(journal.append(&[vec![put("x", "y")]]).is_err(), "poisoned");
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
        drop(journal);
        check_crash_state(
            &dir,
            segment_bytes,
            &w.written,
            &format!("crash after {steps} steps"),
        );
        fs::remove_dir_all(&dir).expect("clean up");
        if finished {
            break;
        }
    }
    assert!(finished, "compaction never finished");
    assert!(crashes >= 6, "only {crashes} crash points");
}

#[derive(Clone, Debug)]
enum Op {
    /// One group commit: batches of (key index, value length or tombstone).
    Append(Vec<Vec<(u8, Option<u8>)>>),
    Compact,
    /// A compaction that stops as if the process crashed after this many
    /// changes to the files, then a reopen.
    CrashingCompact(u8),
    Reopen,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let entry = (0u8..6, proptest::option::weighted(0.7, 0u8..40));
    let batch = proptest::collection::vec(entry, 0..4);
    prop_oneof![
        6 => proptest::collection::vec(batch, 1..4).prop_map(Op::Append),
        2 => Just(Op::Compact),
        1 => (0u8..12).prop_map(Op::CrashingCompact),
        1 => Just(Op::Reopen),
    ]
}

/// What the journal must replay to, for the model-based proptests: the
/// latest value per key and the sequence number of its latest put, starting
/// with a record never superseded (like the broker's activation: it pins the
/// first segment, so only cleaning can reclaim what follows).
struct Model {
    latest: BTreeMap<Bytes, (u64, Bytes)>,
    seq: u64,
}

impl Model {
    fn start(journal: &mut LocalJournal) -> Model {
        let perm = put("permanent", "record");
        journal.append(&[vec![perm.clone()]]).expect("append");
        let mut latest = BTreeMap::new();
        latest.insert(perm.key.clone(), (0, perm.value.clone().expect("put")));
        Model { latest, seq: 0 }
    }

    /// Appends one group commit of batches of (key index, value length or
    /// tombstone), values tagged with the op number `n`.
    fn append(
        &mut self,
        journal: &mut LocalJournal,
        n: usize,
        batches: Vec<Vec<(u8, Option<u8>)>>,
    ) {
        let batches: Vec<Vec<Entry>> = batches
            .into_iter()
            .map(|b| {
                b.into_iter()
                    .map(|(k, v)| Entry {
                        key: Bytes::from(format!("key{k}")),
                        value: v
                            .map(|len| Bytes::from(format!("{n}:{}", "v".repeat(len as usize)))),
                    })
                    .collect()
            })
            .collect();
        for e in batches.iter().flatten() {
            self.seq += 1;
            match &e.value {
                Some(v) => self.latest.insert(e.key.clone(), (self.seq, v.clone())),
                None => self.latest.remove(&e.key),
            };
        }
        journal.append(&batches).expect("append");
    }

    fn view(&self) -> BTreeMap<Bytes, Bytes> {
        self.latest
            .iter()
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect()
    }

    /// Keys in the order of their latest puts.
    fn order(&self) -> Vec<Bytes> {
        let mut order: Vec<(u64, Bytes)> = self
            .latest
            .iter()
            .map(|(k, (s, _))| (*s, k.clone()))
            .collect();
        order.sort();
        order.into_iter().map(|(_, k)| k).collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Small segments, so that whole-segment deletion and prefix cleaning
    /// (at least CLEAN_MIN_SEGMENTS sealed segments, half of them dead) both
    /// happen often, with crashes at every step of them.
    #[test]
    fn random_puts_tombstones_compactions_and_reopens_match_a_model(
        segment_bytes in 48u64..400,
        ops in proptest::collection::vec(op_strategy(), 1..80),
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = config(tmp.path(), segment_bytes);
        let mut journal = open(&cfg);
        let mut model = Model::start(&mut journal);
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Append(batches) => model.append(&mut journal, n, batches),
                Op::Compact => {
                    journal.compact().expect("compact");
                }
                Op::CrashingCompact(steps) => {
                    journal.simulate_crash_in_next_compact(u64::from(steps));
                    match journal.compact() {
                        Ok(_) | Err(LocalJournalError::Poisoned { .. }) => {}
                        Err(e) => panic!("compact: {e}"),
                    }
                    drop(journal);
                    let (j, recovery) = LocalJournal::open(cfg.clone()).expect("reopen after crash");
                    prop_assert_eq!(recovery.truncated_bytes, 0);
                    journal = j;
                }
                Op::Reopen => {
                    drop(journal);
                    let (j, recovery) = LocalJournal::open(cfg.clone()).expect("reopen");
                    prop_assert_eq!(recovery.truncated_bytes, 0);
                    journal = j;
                }
            }
            let batches = journal.read_all().expect("read");
            prop_assert_eq!(&latest_view(&batches), &model.view(), "after op {}", n);
            prop_assert_eq!(latest_order(&batches), model.order(), "order after op {}", n);
            prop_assert_eq!(journal.stats().live_entries, model.latest.len() as u64);
            prop_assert_eq!(journal.stats().segments, segment_files(tmp.path()).len());
            prop_assert_eq!(journal.check_index(), Ok(()), "after op {}", n);
        }
        // The index stays bounded by the keys: at most 7 keys ever existed.
        prop_assert!(journal.stats().tracked_keys <= 7);
        // One compaction does all there is to do: a second finds nothing
        // (cleaning never repeats itself on what it just cleaned).
        journal.compact().expect("final compact");
        let again = journal.compact().expect("compact again");
        prop_assert_eq!((again.segments_deleted, again.segments_cleaned), (0, 0));
        drop(journal);
        let journal = open(&cfg);
        prop_assert_eq!(latest_view(&journal.read_all().expect("read")), model.view());
    }
}

#[test]
fn frame_overhead_constants_match_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut journal = open(&config(tmp.path(), 1 << 20));
    journal.append(&[vec![]]).expect("append empty batch");
    // Header, frame, and a 4-byte payload holding the entry count 0.
    assert_eq!(
        journal.stats().bytes,
        SEGMENT_HEADER_BYTES + BATCH_FRAME_BYTES + 4
    );
}

#[test]
fn a_second_handle_on_the_same_folder_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), 1 << 20);
    let first = open(&cfg);
    let err = LocalJournal::open(cfg.clone()).expect_err("second open must fail");
    assert!(matches!(err, LocalJournalError::Locked { .. }), "{err}");
    drop(first);
    LocalJournal::open(cfg).expect("open after the first handle closed");
}

/// Paging reads entries back by key: the latest put of each key, none for
/// a tombstoned or unknown key, the same after compaction has moved and
/// dropped segments and after a reopen (the index is rebuilt).
#[test]
fn entries_read_back_by_key_through_compaction_and_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), 300);
    let mut journal = open(&cfg);
    for round in 0..3 {
        for k in 0..20 {
            let batch = vec![
                put(
                    &format!("k{k}"),
                    &format!("round {round} {}", "x".repeat(20)),
                ),
                put(&format!("other{k}"), "y"),
            ];
            journal
                .append(std::slice::from_ref(&batch))
                .expect("append");
        }
    }
    for k in 0..10 {
        journal
            .append(&[vec![del(&format!("k{k}"))]])
            .expect("append");
    }
    let keys: Vec<Bytes> = ["k3", "k15", "other7", "missing", "k19"]
        .iter()
        .map(|k| Bytes::copy_from_slice(k.as_bytes()))
        .collect();
    let latest = format!("round 2 {}", "x".repeat(20));
    let want = vec![
        None,
        Some(Bytes::from(latest.clone())),
        Some(Bytes::from("y")),
        None,
        Some(Bytes::from(latest)),
    ];
    assert_eq!(journal.read_latest(&keys).expect("read"), want);
    assert!(journal.compact().expect("compact").segments_deleted > 0);
    assert_eq!(
        journal.read_latest(&keys).expect("read after compaction"),
        want
    );
    drop(journal);
    let journal = open(&cfg);
    assert_eq!(journal.read_latest(&keys).expect("read after reopen"), want);
}

/// A compaction job between planning and applying, as the journal thread
/// holds it while another thread does the file work.
enum Pending {
    Planned(halyard_io::local::CompactionJob),
    Ran(halyard_io::local::CompactionOutcome),
}

#[derive(Clone, Debug)]
enum BgOp {
    /// One group commit: batches of (key index, value length or tombstone).
    Append(Vec<Vec<(u8, Option<u8>)>>),
    /// Plan a job (if none is pending), with a simulated crash after this
    /// many file changes when given.
    Plan(Option<u8>),
    /// Do the pending job's file work, but do not apply it yet.
    Run,
    /// Apply it (running it first if needed).
    Finish,
    Reopen,
}

fn bg_op_strategy() -> impl Strategy<Value = BgOp> {
    let entry = (0u8..6, proptest::option::weighted(0.6, 0u8..40));
    let batch = proptest::collection::vec(entry, 0..4);
    prop_oneof![
        8 => proptest::collection::vec(batch, 1..4).prop_map(BgOp::Append),
        3 => proptest::option::weighted(0.2, 0u8..8).prop_map(BgOp::Plan),
        2 => Just(BgOp::Run),
        2 => Just(BgOp::Finish),
        1 => Just(BgOp::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Compaction off the append path: appends and reads go on between a
    /// job's planning, its file work (renames and unlinks included) and
    /// applying it, so keys it copies get newer puts and tombstones
    /// meanwhile. Every read by key matches the model at every step; the
    /// index stays consistent; replay, reopen and crashes at every step of a
    /// job keep the model's view.
    #[test]
    fn compaction_jobs_interleaved_with_appends_and_reads_match_a_model(
        segment_bytes in 48u64..400,
        ops in proptest::collection::vec(bg_op_strategy(), 1..100),
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = config(tmp.path(), segment_bytes);
        let mut journal = open(&cfg);
        let mut model = Model::start(&mut journal);
        let all_keys: Vec<Bytes> = (0..6)
            .map(|k| Bytes::from(format!("key{k}")))
            .chain([Bytes::from("permanent")])
            .collect();
        let mut pending: Option<Pending> = None;
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                BgOp::Append(batches) => model.append(&mut journal, n, batches),
                BgOp::Plan(crash) => {
                    if pending.is_none() {
                        if let Some(steps) = crash {
                            journal.simulate_crash_in_next_compact(u64::from(steps));
                        }
                        pending = journal.plan_compaction().map(Pending::Planned);
                        if pending.is_none() {
                            journal.cancel_simulated_crash();
                        }
                        prop_assert_eq!(journal.compaction_in_flight(), pending.is_some());
                    }
                }
                BgOp::Run => {
                    pending = match pending.take() {
                        Some(Pending::Planned(job)) => Some(Pending::Ran(job.run())),
                        other => other,
                    };
                }
                BgOp::Finish => {
                    let outcome = match pending.take() {
                        Some(Pending::Planned(job)) => Some(job.run()),
                        Some(Pending::Ran(outcome)) => Some(outcome),
                        None => None,
                    };
                    if let Some(outcome) = outcome {
                        let finished = journal.finish_compaction(outcome);
                        // A crash budget the job did not use up is not for the next one.
                        journal.cancel_simulated_crash();
                        match finished {
                            Ok(_) => {}
                            Err(LocalJournalError::Poisoned { .. }) => {
                                // A simulated crash: what is on disk must replay.
                                drop(journal);
                                let (j, recovery) =
                                    LocalJournal::open(cfg.clone()).expect("reopen after crash");
                                prop_assert_eq!(recovery.truncated_bytes, 0);
                                journal = j;
                            }
                            Err(e) => panic!("compaction job: {e}"),
                        }
                    }
                }
                BgOp::Reopen => {
                    // A job still pending dies with the process: its file
                    // work either never ran or ran to the end.
                    pending = None;
                    drop(journal);
                    let (j, recovery) = LocalJournal::open(cfg.clone()).expect("reopen");
                    prop_assert_eq!(recovery.truncated_bytes, 0);
                    journal = j;
                }
            }
            // Reads by key work at every step, through a job's renames too.
            let got = journal.read_latest(&all_keys).expect("read by key");
            for (key, value) in all_keys.iter().zip(got) {
                prop_assert_eq!(value, model.latest.get(key).map(|(_, v)| v.clone()), "{:?} after op {}", key, n);
            }
            prop_assert_eq!(journal.stats().live_entries, model.latest.len() as u64);
            if pending.is_none() {
                prop_assert_eq!(journal.check_index(), Ok(()), "after op {}", n);
                let batches = journal.read_all().expect("read");
                prop_assert_eq!(&latest_view(&batches), &model.view(), "after op {}", n);
                prop_assert_eq!(journal.stats().segments, segment_files(tmp.path()).len());
            }
        }
        if let Some(p) = pending.take() {
            let outcome = match p {
                Pending::Planned(job) => job.run(),
                Pending::Ran(outcome) => outcome,
            };
            let finished = journal.finish_compaction(outcome);
            journal.cancel_simulated_crash();
            if finished.is_err() {
                drop(journal);
                journal = open(&cfg);
            }
        }
        // Settles like the inline compaction, and the files replay the model.
        compact_until_settled(&mut journal);
        prop_assert_eq!(journal.check_index(), Ok(()));
        drop(journal);
        let journal = open(&cfg);
        prop_assert_eq!(latest_view(&journal.read_all().expect("read")), model.view());
    }
}

/// A cleaning planned, then keys it copies superseded before it is applied
/// (`keep2` tombstoned, `keep3` written again), then more segments and
/// compaction, then a reopen: `keep2` stays deleted (its tombstone outlives
/// the dead copy in the cleaned segment), `keep3` has its new value. With
/// `plant_bug` the cleaning forgets the dead copies: returns what the
/// reopened journal holds either way.
fn superseded_while_cleaning(plant_bug: bool) -> BTreeMap<Bytes, Bytes> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), 400);
    let mut journal = open(&cfg);
    if plant_bug {
        journal.plant_bug_cleaning_forgets_superseded_copies();
    }
    let mut written: Vec<Vec<Entry>> = Vec::new();
    let mut append = |journal: &mut LocalJournal, batch: Vec<Entry>| {
        journal
            .append(std::slice::from_ref(&batch))
            .expect("append");
        written.push(batch);
    };
    // A live key in each of the first segments (none is dead), between
    // superseded churn: the prefix is worth cleaning.
    let mut churn = 0;
    for keep in ["keep1", "keep2", "keep3", "keep4"] {
        append(&mut journal, vec![put(keep, "first")]);
        let segment = journal.stats().segments;
        while journal.stats().segments == segment {
            churn += 1;
            append(&mut journal, vec![put("churn", &format!("{churn:0>60}"))]);
        }
    }
    let job = loop {
        let job = journal.plan_compaction().expect("a compaction step is due");
        if job.describe().starts_with("cleaning") {
            break job;
        }
        journal.finish_compaction(job.run()).expect("delete");
    };
    // Meanwhile, on the journal's thread:
    append(&mut journal, vec![del("keep2")]);
    // In a segment of its own (with churn): nothing live keeps it.
    let segment = journal.stats().segments;
    while journal.stats().segments == segment {
        churn += 1;
        append(&mut journal, vec![put("churn", &format!("{churn:0>60}"))]);
    }
    append(&mut journal, vec![put("keep3", "second")]);
    let outcome = job.run();
    append(&mut journal, vec![put("churn", "while applying")]);
    journal.finish_compaction(outcome).expect("clean");
    assert_eq!(
        journal
            .read_latest(&keys(&["keep1", "keep2", "keep3"]))
            .expect("read"),
        vec![
            Some(Bytes::from("first")),
            None,
            Some(Bytes::from("second"))
        ]
    );
    // The tombstone's segment seals and compaction goes on.
    let segment = journal.stats().segments;
    while journal.stats().segments < segment + 4 {
        churn += 1;
        append(&mut journal, vec![put("churn", &format!("{churn:0>60}"))]);
    }
    compact_until_settled(&mut journal);
    if !plant_bug {
        assert_eq!(journal.check_index(), Ok(()));
    }
    drop(journal);
    let journal = open(&cfg);
    let got = latest_view(&journal.read_all().expect("read"));
    if !plant_bug {
        assert_eq!(got, latest_view(&written));
    }
    got
}

#[test]
fn keys_superseded_while_a_cleaning_runs_stay_superseded() {
    let got = superseded_while_cleaning(false);
    assert!(!got.contains_key(b"keep2".as_slice()), "{got:?}");
    assert_eq!(got.get(b"keep3".as_slice()), Some(&Bytes::from("second")));
}

/// The planted bug: the tombstone of `keep2` is dropped while the cleaned
/// segment still holds its old put, and the reopened journal has it back.
#[test]
fn planted_bug_forgetting_superseded_copies_resurrects_a_deleted_key() {
    let got = superseded_while_cleaning(true);
    assert_eq!(
        got.get(b"keep2".as_slice()),
        Some(&Bytes::from("first")),
        "the planted bug should bring keep2 back: {got:?}"
    );
}
