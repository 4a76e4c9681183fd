//! The lock service model, as `io::zookeeper` and `io::coordinator::file`
//! keep the lock: sessions that expire when the service has not heard from
//! them for the session timeout (the ephemeral `active` znode goes with
//! them), an epoch incremented by every acquisition (compare and set), and
//! the state (epoch, in-sync set) written only by the holder's session,
//! under the newest epoch, at the version the writer read.
//!
//! A holder cut off (or paused) past the timeout loses the lock here first;
//! it hears of it later (an answer `SessionExpired`, or its client giving
//! the session up after 7/5 of the timeout without an answer): the window
//! the checker allows (`check::CoordChecker`).

use std::collections::{BTreeMap, BTreeSet};

use halyard_core::coordinator::{LockState, WriteRefusal};

pub type SessionId = u64;

/// A broker's request, on its session.
#[derive(Clone, Debug)]
pub enum Request {
    Ping,
    Acquire,
    Read,
    Write {
        epoch: u64,
        in_sync: BTreeSet<String>,
        version: u64,
    },
    Release {
        epoch: u64,
    },
    /// Give the session up (its lock goes with it).
    Close,
}

/// The service's answer.
#[derive(Clone, Debug)]
pub enum Answer {
    Pong,
    Acquired {
        epoch: u64,
    },
    Busy,
    State {
        state: Option<LockState>,
        version: u64,
    },
    Written {
        epoch: u64,
        version: u64,
    },
    Refused {
        epoch: u64,
        why: WriteRefusal,
    },
    Released,
    SessionExpired,
}

struct Session {
    broker: usize,
    last_heard_ms: u64,
}

/// The lock's holder: its session, broker and epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    pub session: SessionId,
    pub broker: usize,
    pub epoch: u64,
}

pub struct LockService {
    timeout_ms: u64,
    sessions: BTreeMap<SessionId, Session>,
    /// Expired or closed: never live again.
    ended: BTreeSet<SessionId>,
    holder: Option<Holder>,
    epoch: u64,
    state: Option<LockState>,
    version: u64,
    /// The state each acquisition found (no earlier holder can change it
    /// afterwards).
    pub found_at: BTreeMap<u64, Option<LockState>>,
    /// When the service ended each epoch's lock (expiry, close, release).
    pub ended_at: BTreeMap<u64, u64>,
    pub acquisitions: u64,
    pub expiries: u64,
}

impl LockService {
    pub fn new(timeout_ms: u64) -> LockService {
        LockService {
            timeout_ms,
            sessions: BTreeMap::new(),
            ended: BTreeSet::new(),
            holder: None,
            epoch: 0,
            state: None,
            version: 0,
            found_at: BTreeMap::new(),
            ended_at: BTreeMap::new(),
            acquisitions: 0,
            expiries: 0,
        }
    }

    pub fn holder(&self) -> Option<Holder> {
        self.holder
    }

    fn end_session(&mut self, now: u64, session: SessionId) {
        self.sessions.remove(&session);
        self.ended.insert(session);
        if let Some(h) = self.holder.filter(|h| h.session == session) {
            self.holder = None;
            self.ended_at.insert(h.epoch, now);
        }
    }

    /// Expires sessions not heard from for the timeout; returns the brokers
    /// whose session expired.
    pub fn tick(&mut self, now: u64) -> Vec<(usize, SessionId)> {
        let expired: Vec<(usize, SessionId)> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_sub(s.last_heard_ms) > self.timeout_ms)
            .map(|(id, s)| (s.broker, *id))
            .collect();
        for (_, id) in &expired {
            self.expiries += 1;
            self.end_session(now, *id);
        }
        expired
    }

    /// One request; `None` for a close (nothing to answer).
    pub fn handle(
        &mut self,
        now: u64,
        session: SessionId,
        broker: usize,
        req: Request,
    ) -> Option<Answer> {
        if self.ended.contains(&session) {
            return (!matches!(req, Request::Close)).then_some(Answer::SessionExpired);
        }
        self.sessions
            .entry(session)
            .or_insert(Session {
                broker,
                last_heard_ms: now,
            })
            .last_heard_ms = now;
        let holds = |h: &Option<Holder>| h.is_some_and(|h| h.session == session);
        Some(match req {
            Request::Ping => Answer::Pong,
            Request::Acquire => {
                if self.holder.is_some() {
                    Answer::Busy
                } else {
                    self.epoch += 1;
                    self.acquisitions += 1;
                    self.holder = Some(Holder {
                        session,
                        broker,
                        epoch: self.epoch,
                    });
                    self.found_at.insert(self.epoch, self.state.clone());
                    Answer::Acquired { epoch: self.epoch }
                }
            }
            Request::Read => Answer::State {
                state: self.state.clone(),
                version: self.version,
            },
            Request::Write {
                epoch,
                in_sync,
                version,
            } => {
                // The checks of io::zookeeper's write transaction, in order.
                let why = if !holds(&self.holder) {
                    Some(WriteRefusal::Lost)
                } else if epoch != self.epoch {
                    Some(WriteRefusal::Fenced)
                } else if version != self.version {
                    Some(WriteRefusal::StaleVersion)
                } else {
                    None
                };
                match why {
                    Some(why) => Answer::Refused { epoch, why },
                    None => {
                        self.state = Some(LockState { epoch, in_sync });
                        self.version += 1;
                        Answer::Written {
                            epoch,
                            version: self.version,
                        }
                    }
                }
            }
            Request::Release { epoch } => {
                // Only while the releaser's epoch is still the holder's.
                if holds(&self.holder) && self.holder.is_some_and(|h| h.epoch == epoch) {
                    self.holder = None;
                    self.ended_at.insert(epoch, now);
                }
                Answer::Released
            }
            Request::Close => {
                self.end_session(now, session);
                return None;
            }
        })
    }
}
