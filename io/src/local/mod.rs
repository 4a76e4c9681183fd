//! A segment-file journal on the local disk, for the embedded (no Kafka) mode.
//!
//! The API is blocking; the Tokio driver runs it on a dedicated thread. The
//! journal stores opaque entries (a key and an optional value; no value is a
//! tombstone). The core encodes its records into those bytes itself.
//!
//! # On-disk format (version 1)
//!
//! All integers are little-endian.
//!
//! The journal is a folder of segment files named by a 20-digit zero-padded
//! id, `00000000000000000001.seg`, `00000000000000000002.seg`, ... Ids only
//! grow and are never reused; compaction leaves gaps, and cleaning rewrites
//! a sealed segment under its own id (see below). Other files in the folder
//! are ignored, except `journal.lock`, which an open journal holds with
//! `flock` so that two handles never write the same folder, and
//! `<segment name>.cleaning`, an unfinished cleaning output that `open`
//! deletes. Appends go to the segment with the highest id (the *current*
//! one); all others are sealed and never appended to again.
//!
//! A segment starts with a 24-byte header:
//!
//! ```text
//! offset  size  field
//!      0     8  magic "HLYDJSEG"
//!      8     4  format version (1)
//!     12     4  replaces: 0, or in a cleaned segment the number of ids
//!               after this one that it replaced (see Compaction)
//!     16     8  segment id (must match the file name)
//! ```
//!
//! then zero or more batches, back to back. A batch is what one element of
//! `append`'s slice becomes, and is all in or all out:
//!
//! ```text
//!      u32  payload length L (4 ..= 128 MiB)
//!      u32  CRC32C (Castagnoli) of the L payload bytes
//!   L bytes payload:
//!      u32  entry count
//!      per entry:
//!        u32  key length (<= 256 KiB)
//!             key bytes
//!        u8   has_value (1 = put, 0 = tombstone)
//!        u32  value length (0 for a tombstone; <= 64 MiB)
//!             value bytes
//! ```
//!
//! A batch never spans two segments. A new segment is started when the next
//! batch would push the current one past `segment_bytes`; a batch larger than
//! that gets a segment of its own.
//!
//! # Durability
//!
//! `append` writes every batch of the call, then makes them durable with one
//! `fdatasync` of the current segment (group commit: an fsync costs about a
//! quarter of a millisecond, so one per record would cap the broker at a few
//! thousand records a second). If the call fills a segment, that segment is
//! synced before the next one is created, and the folder is fsynced after a
//! segment is created, so a crash can only ever tear the last segment.
//!
//! A segment may start as a *spare*: a file of `segment_bytes` zeros,
//! written and synced on a thread of its own while the previous segment
//! filled, and renamed into place at the roll (see `spare`). A zero frame is
//! invalid, so the zeros past the last batch end the segment as a torn tail
//! would; a segment is cut to its last batch when sealed, so only the last
//! one can hold zeros. The spare is, when there is one, a dead segment that
//! compaction renamed to `dead-segment-N.recycle` instead of deleting it
//! (at most four wait), then overwritten with zeros in place: its blocks
//! are reused, not freed (on a file system that trims freed blocks, each
//! deletion of a segment held the appends' syncs 8 to 15 ms). None of these
//! names is a segment's, and `open` deletes them all.
//!
//! On `open` every batch of every segment is verified. A bad header or batch
//! in the *last* segment is what a crash during an append leaves behind (a
//! half-written or never-synced batch): that tail is cut off and reported in
//! [`Recovery::truncated_bytes`] (or, when it starts with a frame of zeros,
//! as a spare's unused end does, in [`Recovery::zero_bytes_cut`]). The same
//! damage in an older segment cannot come from a crash, so it is an error
//! and nothing is dropped.
//!
//!
//! # Compaction
//!
//! See the `liveness` module for the rule and the `cleaning` module for how
//! [`LocalJournal::compact`] deletes dead segments and cleans the sealed
//! prefix, crash-safely.
//!
//! # Layout of this module
//!
//! `entry` (what is stored) <- `format` (bytes and limits) <- `error` <-
//! `segment` (files), `spare` (the next segment, zero-filled ahead) and
//! `liveness` (the compaction index) <- `journal`
//! (open, append, recovery) <- `cleaning` (compaction) and `reads` (an
//! entry read back by key, for paging); `driver` runs a
//! journal on a thread with group commit; `file_lock` and `lock` are the
//! `flock` lock and the live/backup lock built on it.

mod cleaning;
mod compaction_job;
mod compactor;
mod config;
mod driver;
mod entry;
mod error;
pub(crate) mod file_lock;
mod format;
mod journal;
mod key_index;
mod liveness;
mod lock;
mod peek;
mod reads;
mod segment;
mod spare;
mod stats;
#[cfg(feature = "testkit")]
mod testkit;

pub use cleaning::CLEAN_MIN_SEGMENTS;
pub use compaction_job::{CompactionJob, CompactionOutcome};
pub use config::LocalJournalConfig;
pub use driver::{spawn_local_journal, spawn_local_journal_mirrored};
pub use entry::Entry;
pub use error::LocalJournalError;
pub use file_lock::FileLock;
pub use format::{BatchLimit, Corruption, BATCH_FRAME_BYTES, KEY_BYTES_MAX, SEGMENT_HEADER_BYTES};
pub use journal::LocalJournal;
pub use lock::{spawn_file_lock, FileLockConfig};
pub use peek::peek_journal;
pub use segment::file_name as segment_file_name;
pub use stats::{CompactStats, JournalStats, Recovery};
