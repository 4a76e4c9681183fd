//! What goes into and out of the lock coordinator's state machine, its
//! configuration, and the events it reports for logs.

use std::collections::BTreeSet;
use std::fmt;

use crate::ha::Role;
use crate::Millis;

/// `--check-period-ms` when not given (Artemis's `check-period`).
pub const CHECK_PERIOD_MS_DEFAULT: Millis = 1_000;
/// Shortest check period: below it the lock service is asked too often.
pub const CHECK_PERIOD_MS_MIN: Millis = 10;
/// Longest check period: failover takes up to a check period.
pub const CHECK_PERIOD_MS_MAX: Millis = 600_000;
/// Most mirror peers of one broker.
pub const PEERS_MAX: usize = 16;
/// After handing the active role back (failback), a broker waits this many
/// check periods before it asks for the lock again: the returning primary,
/// which asks every check period, takes it first.
pub const HANDBACK_HOLD_OFF_PERIODS: u64 = 3;

/// What lives under the lock: the epoch of the broker that wrote it (the
/// last active) and its in-sync set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockState {
    pub epoch: u64,
    pub in_sync: BTreeSet<String>,
}

impl LockState {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(epoch: u64, in_sync: I) -> LockState {
        LockState {
            epoch,
            in_sync: in_sync.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// This broker's name in the lock state.
    pub node: String,
    /// The sync peers: their names in the lock state.
    pub peers: BTreeSet<String>,
    /// How often a passive broker asks for the lock.
    pub check_period_ms: Millis,
    /// A sync peer silent this long leaves the in-sync set.
    pub peer_timeout_ms: Millis,
    /// The operator's explicit override: take the active role even when not
    /// in the in-sync set (logged every time it is used).
    pub force_active: bool,
    /// `--role`: a primary prefers to be active; a backup hands the active
    /// role back to an in-sync primary that asks for failback.
    pub role: Role,
    /// `--allow-failback`: a primary that comes back asks (on its mirror
    /// link) for the active role back once it is in sync.
    pub allow_failback: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoordinatorConfigError {
    #[error("node name {0:?} must be non-empty, without whitespace")]
    BadNodeName(String),
    #[error("peer name {0:?} must be non-empty, without whitespace, and not this node's own")]
    BadPeerName(String),
    #[error("{0} peers: at most {PEERS_MAX}")]
    TooManyPeers(usize),
    #[error("check period {0} ms: must be within {CHECK_PERIOD_MS_MIN}..={CHECK_PERIOD_MS_MAX}")]
    CheckPeriod(Millis),
    #[error("peer timeout {0} ms: must be at least 1")]
    PeerTimeout(Millis),
}

fn good_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl CoordinatorConfig {
    pub fn new(node: impl Into<String>) -> CoordinatorConfig {
        CoordinatorConfig {
            node: node.into(),
            peers: BTreeSet::new(),
            check_period_ms: CHECK_PERIOD_MS_DEFAULT,
            peer_timeout_ms: 3 * CHECK_PERIOD_MS_DEFAULT,
            force_active: false,
            role: Role::Primary,
            allow_failback: false,
        }
    }

    /// This broker asks for the active role back once in sync (a primary
    /// with failback allowed): its mirror target says so to the active.
    pub fn prefers_active(&self) -> bool {
        self.role == Role::Primary && self.allow_failback
    }

    /// This broker, while active, hands the role back to an in-sync peer
    /// that prefers it (a backup).
    pub fn hands_back(&self) -> bool {
        self.role == Role::Backup
    }

    pub fn with_peers<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        peers: I,
    ) -> CoordinatorConfig {
        self.peers = peers.into_iter().map(Into::into).collect();
        self
    }

    /// Whether `name` may be added to the sync peers: a good name, not this
    /// node's own, and room for one more (at most [`PEERS_MAX`]). A name
    /// already among the peers passes.
    pub fn check_new_peer(&self, name: &str) -> Result<(), CoordinatorConfigError> {
        if !good_name(name) || name == self.node {
            return Err(CoordinatorConfigError::BadPeerName(name.to_string()));
        }
        if !self.peers.contains(name) && self.peers.len() >= PEERS_MAX {
            return Err(CoordinatorConfigError::TooManyPeers(self.peers.len() + 1));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), CoordinatorConfigError> {
        if !good_name(&self.node) {
            return Err(CoordinatorConfigError::BadNodeName(self.node.clone()));
        }
        if self.peers.len() > PEERS_MAX {
            return Err(CoordinatorConfigError::TooManyPeers(self.peers.len()));
        }
        if let Some(p) = self
            .peers
            .iter()
            .find(|p| !good_name(p) || **p == self.node)
        {
            return Err(CoordinatorConfigError::BadPeerName(p.clone()));
        }
        if !(CHECK_PERIOD_MS_MIN..=CHECK_PERIOD_MS_MAX).contains(&self.check_period_ms) {
            return Err(CoordinatorConfigError::CheckPeriod(self.check_period_ms));
        }
        if self.peer_timeout_ms == 0 {
            return Err(CoordinatorConfigError::PeerTimeout(self.peer_timeout_ms));
        }
        Ok(())
    }
}

/// Deliberate bugs (simulator tests only) that prove the simulator's
/// coordinator checker can fail.
#[cfg(feature = "planted-bugs")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// A broker outside the in-sync set it read takes the active role
    /// anyway (as if every broker were in sync).
    TakeOverOutOfSync,
    /// Mirror events from an epoch older than the newest seen are applied
    /// (the epoch fence is skipped).
    ApplyOldEpochEvents,
    /// The sync gate passes a durable answer on before the in-sync peers
    /// acknowledged its group (a receipt that only the active broker has).
    ReceiptBeforePeerAck,
}

/// Why the lock service refused (or could not do) a state write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteRefusal {
    /// The lock was acquired again since this broker's epoch.
    Fenced,
    /// This broker no longer holds the lock.
    Lost,
    /// The state changed since this broker read it.
    StaleVersion,
    /// The lock service did not answer: the write may or may not have
    /// happened.
    Unavailable,
}

impl WriteRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteRefusal::Fenced => "fenced by a newer epoch",
            WriteRefusal::Lost => "the lock is lost",
            WriteRefusal::StaleVersion => "the state changed since it was read",
            WriteRefusal::Unavailable => "the lock service did not answer",
        }
    }
}

/// The lock service's and the mirror links' news, and the clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Time passed (see [`crate::coordinator::Coordinator::next_deadline`]).
    Tick,
    /// Answer to [`Output::Acquire`]: held, with this acquisition's epoch.
    Acquired { epoch: u64 },
    /// Answer to [`Output::Acquire`]: another broker holds the lock.
    Busy,
    /// Answer to [`Output::Acquire`]: the lock service could not be asked.
    AcquireFailed { reason: String },
    /// Answer to [`Output::ReadState`]; `None` before any state was written.
    StateRead { state: Option<LockState> },
    /// Answer to [`Output::WriteState`]: written.
    StateWritten { epoch: u64 },
    /// Answer to [`Output::WriteState`]: not written.
    StateWriteRefused { epoch: u64, why: WriteRefusal },
    /// The lock service says the lock held under `epoch` is gone.
    Lost { epoch: u64, reason: String },
    /// A sync peer answered on its mirror link (an ack, a heartbeat).
    PeerHeard { peer: String },
    /// A sync peer has every change this broker made: it may join the
    /// in-sync set.
    PeerCaughtUp { peer: String },
    /// A mirror event (or anything) stamped with `epoch` was seen.
    EpochSeen { epoch: u64 },
    /// A sync peer said (at its mirror link's handshake) whether it prefers
    /// the active role (a primary with failback allowed). The latest word
    /// counts.
    PeerPreference { peer: String, prefers_active: bool },
    /// Stop: close the listener, release the lock.
    Shutdown,
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Try to take the lock without waiting; answer with
    /// [`Input::Acquired`], [`Input::Busy`] or [`Input::AcquireFailed`].
    Acquire,
    /// Read the lock state under the held lock; answer with
    /// [`Input::StateRead`].
    ReadState,
    /// Write the lock state under the held lock, fenced by `epoch`; answer
    /// with [`Input::StateWritten`] or [`Input::StateWriteRefused`].
    WriteState {
        epoch: u64,
        in_sync: BTreeSet<String>,
    },
    /// Give the lock up.
    Release,
    /// Bind the client listener: this broker is the active one of `epoch`.
    StartAccepting { epoch: u64 },
    /// Close the client listener and every client connection.
    StopAccepting,
    /// From now on a client receipt waits for the local journal and these
    /// peers (the set only shrinks after the lock service has it).
    RequiredAcks { epoch: u64, peers: BTreeSet<String> },
    /// Failback: `peer`, a primary in the in-sync set of `epoch`, wants
    /// the active role. Drain (stop accepting, close the clients, let the
    /// pending work finish: receipts still wait for the in-sync peers),
    /// then release (the node's `Release`), and wait
    /// [`HANDBACK_HOLD_OFF_PERIODS`] check periods before asking again.
    HandBack { epoch: u64, peer: String },
    /// Stopped: the lock is released.
    Stopped,
    /// For logs and metrics.
    Event(Event),
}

/// What happened, for logs (each renders as a line a human can grep).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Acquired {
        epoch: u64,
    },
    AcquireFailed {
        reason: String,
    },
    /// Not in the last active's in-sync set: released without taking over.
    NotInSync {
        epoch: u64,
        in_sync: BTreeSet<String>,
    },
    /// Not in the in-sync set, but the operator forced it.
    ForcedActive {
        epoch: u64,
        in_sync: BTreeSet<String>,
    },
    /// The lock service handed out an epoch not newer than one seen.
    EpochNotNewer {
        epoch: u64,
        newest: u64,
    },
    /// The state under the lock names an epoch not older than the lock's.
    StateFromTheFuture {
        state_epoch: u64,
        epoch: u64,
    },
    Active {
        epoch: u64,
        in_sync: BTreeSet<String>,
    },
    PeerSilent {
        peer: String,
        silent_ms: Millis,
    },
    PeerLeft {
        peer: String,
        epoch: u64,
    },
    PeerJoined {
        peer: String,
        epoch: u64,
    },
    WriteRefused {
        epoch: u64,
        why: WriteRefusal,
    },
    LockLost {
        epoch: u64,
        reason: String,
    },
    NewerEpochSeen {
        epoch: u64,
        ours: u64,
    },
    /// Failback: an in-sync primary wants the active role.
    HandingBack {
        peer: String,
        epoch: u64,
    },
    /// A primary with failback took the active role after another broker's
    /// stream.
    TookBack {
        epoch: u64,
    },
    Stopped,
}

fn names(set: &BTreeSet<String>) -> String {
    let v: Vec<&str> = set.iter().map(String::as_str).collect();
    format!("{{{}}}", v.join(", "))
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Acquired { epoch } => write!(f, "lock acquired with epoch {epoch}"),
            Event::AcquireFailed { reason } => write!(f, "cannot ask for the lock: {reason}"),
            Event::NotInSync { epoch, in_sync } => write!(
                f,
                "not in the in-sync set {} of epoch {epoch}: catching up from the active first",
                names(in_sync)
            ),
            Event::ForcedActive { epoch, in_sync } => write!(
                f,
                "operator override: taking the active role although not in the in-sync set {} of epoch {epoch} (changes receipted by that epoch may be lost)",
                names(in_sync)
            ),
            Event::EpochNotNewer { epoch, newest } => write!(
                f,
                "the lock service gave epoch {epoch}, not newer than epoch {newest} already seen: releasing"
            ),
            Event::StateFromTheFuture { state_epoch, epoch } => write!(
                f,
                "the lock state names epoch {state_epoch}, not older than this acquisition's epoch {epoch}: releasing"
            ),
            Event::Active { epoch, in_sync } => write!(
                f,
                "active with epoch {epoch}, in-sync set {}: opening the client listener",
                names(in_sync)
            ),
            Event::PeerSilent { peer, silent_ms } => write!(
                f,
                "peer {peer} silent for {silent_ms} ms: removing it from the in-sync set"
            ),
            Event::PeerLeft { peer, epoch } => {
                write!(f, "peer {peer} left the in-sync set of epoch {epoch}")
            }
            Event::PeerJoined { peer, epoch } => {
                write!(f, "peer {peer} joined the in-sync set of epoch {epoch}")
            }
            Event::WriteRefused { epoch, why } => write!(
                f,
                "lock state write of epoch {epoch} refused: {}",
                why.as_str()
            ),
            Event::LockLost { epoch, reason } => write!(
                f,
                "lock lost (epoch {epoch}: {reason}), closing the client listener"
            ),
            Event::NewerEpochSeen { epoch, ours } => write!(
                f,
                "epoch {epoch} seen, newer than ours ({ours}): stepping down, closing the client listener"
            ),
            Event::HandingBack { peer, epoch } => write!(
                f,
                "primary {peer} is in sync (in the in-sync set of epoch {epoch}) and asks for failback: handing the active role back"
            ),
            Event::TookBack { epoch } => {
                write!(f, "failback: took the active role back under epoch {epoch}")
            }
            Event::Stopped => write!(f, "lock coordinator stopped"),
        }
    }
}
