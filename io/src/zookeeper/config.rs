//! The ZooKeeper lock's settings and the znodes it uses.

use std::time::Duration;

use super::error::ZkLockError;
use super::state::{validate_lock_id, validate_node_name};

/// The parent of every lock's znodes.
pub const ROOT: &str = "/halyard";

/// Session timeout when none is given. The server keeps it within its
/// `minSessionTimeout`..`maxSessionTimeout` (by default 2 to 20 ticks, 4 s to
/// 40 s with ZooKeeper's default 2 s tick); the negotiated value is
/// [`super::ZkSession::session_timeout`].
pub const SESSION_TIMEOUT_MS_DEFAULT: u64 = 10_000;

#[derive(Clone, Debug)]
pub struct ZkLockConfig {
    /// `host:port[,host:port...]`, as ZooKeeper's own clients take it.
    pub connect: String,
    /// The lock's name: its znodes live under `/halyard/<lock_id>`.
    pub lock_id: String,
    /// This broker's name: the active znode's data, and its name in an
    /// in-sync set.
    pub node_name: String,
    /// How long ZooKeeper keeps the session (and so the active znode) after
    /// it last heard from this client.
    pub session_timeout: Duration,
}

impl ZkLockConfig {
    pub fn new(
        connect: impl Into<String>,
        lock_id: impl Into<String>,
        node_name: impl Into<String>,
    ) -> ZkLockConfig {
        ZkLockConfig {
            connect: connect.into(),
            lock_id: lock_id.into(),
            node_name: node_name.into(),
            session_timeout: Duration::from_millis(SESSION_TIMEOUT_MS_DEFAULT),
        }
    }

    pub fn with_session_timeout(mut self, timeout: Duration) -> ZkLockConfig {
        self.session_timeout = timeout;
        self
    }

    pub fn validate(&self) -> Result<(), ZkLockError> {
        if self.connect.trim().is_empty() {
            return Err(ZkLockError::Invalid {
                what: "connect string",
                value: self.connect.clone(),
                reason: "empty",
            });
        }
        if self.session_timeout.is_zero() {
            return Err(ZkLockError::Invalid {
                what: "session timeout",
                value: format!("{:?}", self.session_timeout),
                reason: "zero",
            });
        }
        validate_lock_id(&self.lock_id)?;
        validate_node_name(&self.node_name)
    }

    pub fn paths(&self) -> LockPaths {
        LockPaths::new(&self.lock_id)
    }
}

/// The znodes of one lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockPaths {
    /// `/halyard/<lock-id>` (persistent).
    pub dir: String,
    /// `/halyard/<lock-id>/active` (ephemeral): exists while held; holds the
    /// holder's node name.
    pub active: String,
    /// `/halyard/<lock-id>/epoch` (persistent): the newest epoch.
    pub epoch: String,
    /// `/halyard/<lock-id>/state` (persistent): the active's epoch and
    /// in-sync set.
    pub state: String,
}

impl LockPaths {
    pub fn new(lock_id: &str) -> LockPaths {
        let dir = format!("{ROOT}/{lock_id}");
        LockPaths {
            active: format!("{dir}/active"),
            epoch: format!("{dir}/epoch"),
            state: format!("{dir}/state"),
            dir,
        }
    }
}
