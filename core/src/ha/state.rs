//! The activation states a node moves through (see the diagram in [`super`]).

use crate::Millis;

/// How a node is configured to behave in a live/backup pair or group.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Prefers to be live; with `allow_failback` it takes the lock back when it returns.
    Primary,
    /// Waits for the live to go away.
    Backup,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Backup => "backup",
        }
    }
}

/// Where activation stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum HaState {
    NotStarted,
    /// Asked for the live lock; a backup until it is granted. `retry_at` is
    /// when to ask again after a failed activation.
    Waiting {
        retry_at: Option<Millis>,
    },
    /// Holds the lock; fencing older writers and reading the journal.
    Loading,
    /// Journal read; the activation record is being written.
    Activating,
    /// Serving clients.
    Live,
    /// Handing the live role back (failback or shutdown): no new work,
    /// finishing what is in the journal pipeline.
    Draining {
        until: Millis,
        then: AfterDrain,
    },
    Stopped,
}

/// What follows a drain.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AfterDrain {
    /// Release the lock and wait as a backup.
    BecomeBackup,
    /// Release the lock and stop.
    Stop,
}

impl HaState {
    pub fn name(&self) -> &'static str {
        match self {
            HaState::NotStarted => "not-started",
            HaState::Waiting { .. } => "backup",
            HaState::Loading => "loading",
            HaState::Activating => "activating",
            HaState::Live => "live",
            HaState::Draining { .. } => "draining",
            HaState::Stopped => "stopped",
        }
    }

    /// Holding the live lock (or about to release it).
    pub fn holds_lock(&self) -> bool {
        matches!(
            self,
            HaState::Loading | HaState::Activating | HaState::Live | HaState::Draining { .. }
        )
    }
}
