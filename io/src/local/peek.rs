//! Reading a journal without opening it: no lock taken, nothing repaired,
//! so it works on a folder a running broker writes (`halyard mirror
//! compare` on live brokers). What it reads is the journal as of some
//! moment during the read: a batch being appended at the end is left out
//! (its frame does not check yet), and a segment that a cleaning deleted
//! under the reader is an error to retry.

use std::path::Path;

use super::entry::Entry;
use super::error::LocalJournalError;
use super::segment;

/// Calls `f` with every batch of the journal in `dir`, in append order;
/// returns how many batches were read.
pub fn peek_journal(dir: &Path, mut f: impl FnMut(Vec<Entry>)) -> Result<u64, LocalJournalError> {
    let ids = segment::list(dir)?.ids;
    let mut batches = 0u64;
    // Highest id a cleaned segment replaced (as `LocalJournal::open`).
    let mut replaced_through = 0u64;
    for (i, &id) in ids.iter().enumerate() {
        if id <= replaced_through {
            continue;
        }
        let scan = segment::scan(dir, id, None, &mut |_, batch| {
            batches += 1;
            f(batch);
        })?;
        if scan.replaces > 0 {
            replaced_through = id.saturating_add(u64::from(scan.replaces));
        }
        if let Some((offset, problem)) = scan.stop {
            // Only the last segment may end in a batch still being written.
            if i + 1 != ids.len() {
                return Err(LocalJournalError::CorruptBatch {
                    file: segment::file_name(id),
                    offset,
                    problem,
                });
            }
        }
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::{LocalJournal, LocalJournalConfig};

    #[test]
    fn reads_what_an_open_journal_holds_without_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LocalJournalConfig::new(dir.path().join("journal"));
        config.fsync = false;
        let (mut j, _) = LocalJournal::open(config.clone()).unwrap();
        j.append(&[
            vec![Entry::put(&b"a"[..], &b"1"[..])],
            vec![Entry::tombstone(&b"a"[..])],
        ])
        .unwrap();
        let mut seen = Vec::new();
        let n = peek_journal(&config.dir, |b| seen.extend(b)).unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            seen,
            vec![
                Entry::put(&b"a"[..], &b"1"[..]),
                Entry::tombstone(&b"a"[..])
            ]
        );
        // Still held by `j`: a second open is refused, a peek is not.
        assert!(LocalJournal::open(config).is_err());
    }
}
