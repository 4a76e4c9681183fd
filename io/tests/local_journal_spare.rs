//! The local journal's zero-filled spare segments: a roll renames one into
//! place, sealed segments end at their last batch, recovery cuts the zeros
//! (and anything a crash left past them) off the last segment, a spare left
//! by a stop is deleted, and a dead segment is overwritten with zeros and
//! reused as a spare instead of being deleted.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use halyard_io::local::{
    Entry, LocalJournal, LocalJournalConfig, BATCH_FRAME_BYTES, SEGMENT_HEADER_BYTES,
};

const SEGMENT_BYTES: u64 = 64 * 1024;
const SPARE: &str = "next-segment.zeroed";
/// The first name a journal gives a dead segment it keeps for a spare.
const RECYCLED: &str = "dead-segment-1.recycle";

fn config(dir: &Path) -> LocalJournalConfig {
    LocalJournalConfig {
        dir: dir.to_path_buf(),
        segment_bytes: SEGMENT_BYTES,
        // Spares are only made when appends are synced.
        fsync: true,
    }
}

fn batch(i: usize) -> Vec<Entry> {
    vec![Entry::put(
        Bytes::from(format!("key-{i}")),
        Bytes::from(vec![b'a' + (i % 26) as u8; 1500 + i % 700]),
    )]
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}

/// Where the batches of a segment's bytes end (walking the frames' lengths
/// until a zero length or the end of the bytes).
fn data_end(bytes: &[u8]) -> usize {
    let mut at = SEGMENT_HEADER_BYTES as usize;
    while at + BATCH_FRAME_BYTES as usize <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            break;
        }
        at += BATCH_FRAME_BYTES as usize + len;
    }
    at
}

/// Waits until `path` is `SEGMENT_BYTES` long and then a little more (its
/// last sync), at most 2 s.
fn wait_whole(path: &Path) {
    let t = Instant::now();
    while !fs::metadata(path).is_ok_and(|m| m.len() == SEGMENT_BYTES)
        && t.elapsed() < Duration::from_secs(2)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(50));
}

/// Appends `n` batches one call at a time, pausing once the segment is half
/// full until the spare is on disk, so that every roll
/// after the first can use one.
fn fill(journal: &mut LocalJournal, dir: &Path, written: &mut Vec<Vec<Entry>>, n: usize) {
    let mut waited_in = None;
    for _ in 0..n {
        let b = batch(written.len());
        let last = segment_files(dir).pop().expect("a segment");
        // The data's end, not the file's: a spare is full size from the start.
        let len = data_end(&fs::read(&last).expect("read")) as u64;
        if len >= SEGMENT_BYTES / 2 && waited_in.as_ref() != Some(&last) {
            waited_in = Some(last);
            wait_whole(&dir.join(SPARE));
        }
        journal.append(std::slice::from_ref(&b)).expect("append");
        written.push(b);
    }
}

#[test]
fn rolls_use_zero_filled_spares_and_sealed_segments_end_at_their_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("journal");
    let (mut journal, _) = LocalJournal::open(config(&dir)).expect("open");
    let mut written = Vec::new();
    // About 1.9 KB a batch: 34 per segment, so ten segments.
    fill(&mut journal, &dir, &mut written, 340);
    let stats = journal.stats();
    assert!(
        stats.segments_preallocated >= 5,
        "{} of {} segments started from a spare",
        stats.segments_preallocated,
        stats.segments
    );

    // Every sealed segment ends exactly at its last batch; the current one,
    // if it was a spare, is the spare's size with zeros past its data.
    let files = segment_files(&dir);
    let (current, sealed) = files.split_last().expect("segments");
    for f in sealed {
        let bytes = fs::read(f).expect("read");
        assert_eq!(
            data_end(&bytes),
            bytes.len(),
            "{} ends at its data",
            f.display()
        );
    }
    let bytes = fs::read(current).expect("read");
    let end = data_end(&bytes);
    let zeros = bytes.len() - end;
    if bytes.len() as u64 == SEGMENT_BYTES {
        assert!(bytes[end..].iter().all(|b| *b == 0), "zeros past the data");
    }

    // A crash now (a copy of the files while the journal is open): nothing
    // lost, the zeros cut and not taken for damage.
    let copy = tmp.path().join("copy");
    fs::create_dir_all(&copy).expect("mkdir");
    for f in &files {
        fs::copy(f, copy.join(f.file_name().expect("name"))).expect("copy");
    }
    drop(journal);
    assert!(!dir.join(SPARE).exists(), "a spare not taken is deleted");
    let (journal, recovery) = LocalJournal::open(config(&copy)).expect("reopen");
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(recovery.zero_bytes_cut, zeros as u64);
    assert_eq!(journal.read_all().expect("read"), written);
}

/// A crash can leave a whole batch past a gap of zeros (its write reached
/// the disk, an earlier one's did not; neither was acknowledged). Recovery
/// must cut it, or a later append that ends where it starts would bring it
/// back.
#[test]
fn a_batch_past_the_zeros_is_never_read_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("journal");
    let (mut journal, _) = LocalJournal::open(config(&dir)).expect("open");
    let mut written = Vec::new();
    fill(&mut journal, &dir, &mut written, 60);
    assert!(journal.stats().segments_preallocated >= 1);
    let current = segment_files(&dir).pop().expect("segment");
    drop(journal);
    let mut bytes = fs::read(&current).expect("read");
    assert_eq!(
        bytes.len() as u64,
        SEGMENT_BYTES,
        "the last segment was a spare"
    );
    let end = data_end(&bytes);
    // The last batch's frame, copied past a gap as long as the next append
    // will be.
    let (mut journal, _) = LocalJournal::open(config(&dir)).expect("open");
    let next = vec![Entry::put(Bytes::from("next"), Bytes::from("x"))];
    journal.append(std::slice::from_ref(&next)).expect("append");
    let after = fs::read(&current).expect("read");
    let gap = data_end(&after) - end;
    drop(journal);
    let stale_at = end + gap;
    let first = SEGMENT_HEADER_BYTES as usize;
    let first_len = BATCH_FRAME_BYTES as usize
        + u32::from_le_bytes(bytes[first..first + 4].try_into().expect("4")) as usize;
    let stale = bytes[first..first + first_len].to_vec();
    // Put the zero-filled file back as it was before `next`, with the stale
    // batch past the gap.
    bytes[stale_at..stale_at + first_len].copy_from_slice(&stale);
    fs::write(&current, &bytes).expect("write");

    let (mut journal, recovery) = LocalJournal::open(config(&dir)).expect("reopen");
    assert_eq!(journal.read_all().expect("read"), written);
    assert_eq!(
        recovery.truncated_bytes + recovery.zero_bytes_cut,
        (bytes.len() - end) as u64
    );
    journal.append(std::slice::from_ref(&next)).expect("append");
    drop(journal);
    let (journal, _) = LocalJournal::open(config(&dir)).expect("reopen");
    let mut want = written.clone();
    want.push(next);
    assert_eq!(
        journal.read_all().expect("read"),
        want,
        "the stale batch stays gone"
    );
}

/// A batch of one of five keys, so that older segments die as newer ones
/// supersede their entries.
fn churn(i: usize) -> Vec<Entry> {
    vec![Entry::put(
        Bytes::from(format!("key-{}", i % 5)),
        Bytes::from(vec![b'a' + (i % 26) as u8; 1500 + i % 700]),
    )]
}

#[test]
fn a_dead_segment_is_zeroed_and_reused_as_the_next_segment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("journal");
    let (mut journal, _) = LocalJournal::open(config(&dir)).expect("open");
    let mut i = 0;
    // Three segments; the first is dead once the third is written.
    while segment_files(&dir).len() < 3 {
        journal.append(&[churn(i)]).expect("append");
        i += 1;
    }
    let first = segment_files(&dir).remove(0);
    let first_ino = fs::metadata(&first).expect("stat").ino();
    let before = fs::read(&first).expect("read");
    // The spare made for the third segment, if any, was taken or is still
    // being written: let it finish before the roll below takes it.
    if dir.join(SPARE).exists() {
        wait_whole(&dir.join(SPARE));
    }
    let compacted = journal.compact().expect("compact");
    assert!(compacted.segments_deleted >= 1, "{compacted:?}");
    assert!(!first.exists(), "the segment is gone as a segment");
    let recycled = dir.join(RECYCLED);
    assert_eq!(
        fs::metadata(&recycled).expect("kept for a spare").ino(),
        first_ino
    );
    assert_eq!(fs::read(&recycled).expect("read"), before, "untouched yet");

    // The next spare overwrites it; the roll after that renames it into place.
    let rolls = |dir: &Path| segment_files(dir).pop().expect("a segment");
    let current = rolls(&dir);
    while rolls(&dir) == current {
        if journal.stats().segments_recycled == 1 && dir.join(SPARE).exists() {
            wait_whole(&dir.join(SPARE));
            let spare = fs::read(dir.join(SPARE)).expect("read");
            if spare.iter().all(|b| *b == 0) {
                assert_eq!(
                    fs::metadata(dir.join(SPARE)).expect("stat").ino(),
                    first_ino
                );
            }
        }
        journal.append(&[churn(i)]).expect("append");
        i += 1;
    }
    assert_eq!(journal.stats().segments_recycled, 1);
    assert!(!recycled.exists());
    let reused = rolls(&dir);
    assert_eq!(
        fs::metadata(&reused).expect("stat").ino(),
        first_ino,
        "the same blocks"
    );
    journal.append(&[churn(i)]).expect("append");

    // A crash now: the reused segment holds its own batch and zeros, none
    // of the batches it held before.
    let copy = tmp.path().join("copy");
    fs::create_dir_all(&copy).expect("mkdir");
    for f in segment_files(&dir) {
        fs::copy(&f, copy.join(f.file_name().expect("name"))).expect("copy");
    }
    let want = journal.read_all().expect("read");
    drop(journal);
    let (journal, recovery) = LocalJournal::open(config(&copy)).expect("reopen");
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(journal.read_all().expect("read"), want);
    let bytes = fs::read(copy.join(reused.file_name().expect("name"))).expect("read");
    let end = data_end(&bytes);
    assert!(bytes[end..].iter().all(|b| *b == 0), "zeros past its data");
}

#[test]
fn a_spare_and_a_recycled_segment_left_by_a_stop_are_deleted_at_open() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("journal");
    let (mut journal, _) = LocalJournal::open(config(&dir)).expect("open");
    journal.append(&[batch(0)]).expect("append");
    drop(journal);
    fs::write(dir.join(SPARE), vec![7u8; 1000]).expect("write");
    // A dead segment's bytes (valid batches) under the recycling name.
    let seg = segment_files(&dir).pop().expect("segment");
    fs::copy(&seg, dir.join(RECYCLED)).expect("copy");
    let (journal, recovery) = LocalJournal::open(config(&dir)).expect("open");
    assert!(!dir.join(SPARE).exists());
    assert!(!dir.join(RECYCLED).exists());
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(journal.read_all().expect("read"), vec![batch(0)]);
}
