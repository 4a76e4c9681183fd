//! Settings of the local journal.

use std::path::PathBuf;

use super::error::LocalJournalError;

/// Default size at which a segment is sealed and a new one started.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Largest `segment_bytes` accepted (4 GiB).
pub const SEGMENT_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalJournalConfig {
    /// The journal's folder; created if missing.
    pub dir: PathBuf,
    /// Size at which a segment is sealed (default 64 MiB).
    pub segment_bytes: u64,
    /// Sync data to disk on every append (default true). False only for tests
    /// and benches: an acknowledged append could be lost on power failure.
    pub fsync: bool,
}

impl LocalJournalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> LocalJournalConfig {
        LocalJournalConfig {
            dir: dir.into(),
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            fsync: true,
        }
    }

    pub(super) fn validate(&self) -> Result<(), LocalJournalError> {
        if self.segment_bytes == 0 || self.segment_bytes > SEGMENT_BYTES_MAX {
            return Err(LocalJournalError::InvalidConfig(format!(
                "segment_bytes {} is outside 1..={SEGMENT_BYTES_MAX}",
                self.segment_bytes
            )));
        }
        Ok(())
    }
}
