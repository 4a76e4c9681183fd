//! What can go wrong with a lock coordinator, by kind: the driver tells a
//! refused write (fenced, lost, stale) from an unreachable lock service, and
//! hands the core state machine a `WriteRefusal`.

use std::path::PathBuf;

use halyard_core::coordinator::WriteRefusal;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CoordinatorError {
    /// A setting is not usable as given.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    /// The lock was acquired again since this holder's epoch.
    #[error("fenced: the lock was acquired again since epoch {epoch}")]
    Fenced { epoch: u64 },
    /// This holder no longer holds the lock.
    #[error("the lock is lost: {why}")]
    Lost { why: String },
    /// The state changed since the version the writer read.
    #[error("the lock state changed since it was read: read it again")]
    StaleVersion,
    /// A file or znode holds something this code did not write.
    #[error("{what} holds something else: {reason}")]
    Corrupt { what: String, reason: String },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The lock service did not answer (or answered with an error that
    /// says nothing about the lock): the request may or may not have been
    /// applied.
    #[error("lock service unavailable: {0}")]
    Unavailable(String),
}

impl CoordinatorError {
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        CoordinatorError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// What the core state machine is told about a failed state write.
    pub fn refusal(&self) -> WriteRefusal {
        match self {
            CoordinatorError::Fenced { .. } => WriteRefusal::Fenced,
            CoordinatorError::Lost { .. } => WriteRefusal::Lost,
            CoordinatorError::StaleVersion | CoordinatorError::Corrupt { .. } => {
                WriteRefusal::StaleVersion
            }
            CoordinatorError::Invalid { .. }
            | CoordinatorError::Io { .. }
            | CoordinatorError::Unavailable(_) => WriteRefusal::Unavailable,
        }
    }
}
