//! Errors of the local journal.

use std::path::PathBuf;

use super::format::{BatchLimit, Corruption};

/// Everything that can go wrong with the local journal.
///
/// Messages name the segment file (and the byte offset where it matters) so
/// an operator can find the damage with `xxd` without reading the code.
#[derive(Debug, thiserror::Error)]
pub enum LocalJournalError {
    #[error("invalid journal config: {0}")]
    InvalidConfig(String),

    #[error("journal I/O error: {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Another handle (in this process or another) has the journal open.
    #[error("journal folder {} is already open (journal.lock is held)", dir.display())]
    Locked { dir: PathBuf },

    /// A segment's header is not one this build can read. Never treated as a
    /// torn tail: a foreign or newer file must not be overwritten.
    #[error("bad segment header in {file}: {problem}")]
    BadSegmentHeader { file: String, problem: Corruption },

    /// A batch failed its length or CRC check somewhere a torn write cannot
    /// explain (an older segment, or a read after open).
    #[error("corrupt batch at {file} offset {offset}: {problem}")]
    CorruptBatch {
        file: String,
        offset: u64,
        problem: Corruption,
    },

    /// `append` refused a batch before writing anything.
    #[error("batch {batch} rejected: {problem}")]
    BatchRejected { batch: usize, problem: BatchLimit },

    /// An earlier failure left the files in a state this handle cannot vouch
    /// for (for example a failed fsync: the page cache may have dropped the
    /// dirty pages). Reopening runs recovery and is the only way forward.
    #[error("journal is unusable after an earlier failure ({reason}); reopen it to recover")]
    Poisoned { reason: String },

    /// Cleaning found the compaction index and the segment files
    /// disagreeing (a bug). Nothing was changed on disk; the journal is
    /// poisoned so that reopening rebuilds the index from the files.
    #[error(
        "journal cleaning aborted: the compaction index disagrees with the segments: {detail}"
    )]
    IndexMismatch { detail: String },

    /// A cleaned segment replaced ids up to and including the newest
    /// segment in the folder. Our own crashes cannot leave this (the
    /// current segment is never cleaned); files were removed by hand.
    #[error("segment {replaced} is replaced by the cleaned segment {by}, but no newer segment exists; files were removed from the journal folder")]
    ReplacedLastSegment { replaced: String, by: String },

    #[error("segment ids exhausted (last segment id {last})")]
    SegmentIdsExhausted { last: u64 },
}

impl LocalJournalError {
    pub(super) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LocalJournalError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
