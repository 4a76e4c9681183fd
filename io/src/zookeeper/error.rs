//! What can go wrong with the ZooKeeper lock, by kind: the caller (the lock
//! driver, and through it the node's state machine) tells a refused write
//! (`Fenced`, `StaleVersion`, `Lost`) from ZooKeeper being unreachable.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ZkLockError {
    /// A setting is not usable as given (a lock id with a `/`, a node name
    /// with a space, an empty connect string).
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    /// No session could be established.
    #[error("cannot connect to ZooKeeper at {connect}: {source}")]
    Connect {
        connect: String,
        source: zookeeper_client::Error,
    },
    /// A request failed (the session expired or was closed, the connection
    /// was lost mid-request, an unexpected answer).
    #[error("ZooKeeper {op} {path}: {source}")]
    ZooKeeper {
        op: &'static str,
        path: String,
        source: zookeeper_client::Error,
    },
    /// The lock was acquired again since this holder's epoch: the write is
    /// refused, and this holder is no longer the active one.
    #[error("fenced: the lock was acquired again since epoch {epoch}")]
    Fenced { epoch: u64 },
    /// This holder's active znode is gone (its session expired, or someone
    /// deleted it): the write is refused.
    #[error("the lock is lost: {path} is gone")]
    Lost { path: String },
    /// The state znode changed since the version the writer read: read it
    /// again, then decide.
    #[error("the lock state changed since version {expected}: read it again")]
    StaleVersion { expected: i32 },
    /// A znode holds something this code did not write.
    #[error("{path} holds {found:?}: {reason}")]
    Corrupt {
        path: String,
        found: String,
        reason: String,
    },
    /// This session already holds the lock through a live `ZkLock`.
    #[error("this session already holds {path}")]
    AlreadyHeld { path: String },
}

impl ZkLockError {
    pub(super) fn zk(op: &'static str, path: &str, source: zookeeper_client::Error) -> Self {
        ZkLockError::ZooKeeper {
            op,
            path: path.to_string(),
            source,
        }
    }

    /// The session behind the request has ended (expired, closed or refused
    /// authentication): nothing more can be done through it.
    pub fn is_session_ended(&self) -> bool {
        use zookeeper_client::Error as E;
        matches!(
            self,
            ZkLockError::ZooKeeper {
                source: E::SessionExpired | E::ClientClosed | E::AuthFailed | E::SessionMoved,
                ..
            }
        )
    }

    /// The connection dropped while the request was out (closed, or no
    /// answer in time, which the client reports as its own `Custom` error):
    /// the request may or may not have been applied. The client reconnects
    /// within the session; read again before deciding.
    pub fn is_connection_loss(&self) -> bool {
        use zookeeper_client::Error as E;
        matches!(
            self,
            ZkLockError::ZooKeeper {
                source: E::ConnectionLoss | E::Custom(_),
                ..
            }
        )
    }
}
