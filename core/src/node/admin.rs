//! Management operations (the HTTP API's purge, move, retry, delete and
//! browse). A change goes through the journal like a client's operation
//! and is answered only once durable, so it survives a failover; browse
//! only reads.
//!
//! Only references that are waiting (ready or scheduled) are touched: a
//! message out with a consumer stays with it, as Artemis's
//! `removeAllMessages` and `moveMessages` leave deliveries in flight.

use std::fmt;

use super::config::PlantedBug;
use super::node::Node;
use super::ports::Output;
use super::work::{Effects, Work};
use crate::broker::queue::RefState;
use crate::broker::{RefKey, Settled};
use crate::ha::HaState;
use crate::ids::Id;
use crate::journal::{Entry, Key};
use crate::message::{Body, Routing, Value};

/// Messages one purge, move or retry takes at most (one journal batch);
/// the answer says how many are left, and the caller asks again.
pub const ADMIN_BATCH_MAX: usize = 10_000;
/// Messages one browse returns at most.
pub const BROWSE_MAX: usize = 1_000;
/// Bytes of a body shown by browse.
pub const BODY_PREVIEW_BYTES: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminOp {
    /// Acknowledge the waiting messages of a queue (they are gone).
    Purge { queue: String },
    /// Move the waiting messages to the anycast queue of `to`.
    Move { queue: String, to: String },
    /// Move each waiting message back to the address it was sent to
    /// (dead letters, expired messages).
    Retry { queue: String },
    /// Delete a durable queue with no consumers (and its messages).
    DeleteQueue { queue: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminReply {
    Purged {
        purged: u64,
        remaining: u64,
    },
    Moved {
        moved: u64,
        skipped: u64,
        remaining: u64,
    },
    Deleted {
        messages: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminError {
    /// Not live: changes go to the live node.
    NotLive {
        state: &'static str,
    },
    NoQueue(String),
    ConsumersAttached {
        queue: String,
        consumers: usize,
    },
    /// A subscription queue of a connection: it ends with its connection.
    NotDurable(String),
    /// `to` is not somewhere messages can be moved.
    BadTarget {
        to: String,
        why: &'static str,
    },
    /// The node stepped down before the change was durable: it may or may
    /// not have happened; ask the live node.
    Abandoned,
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::NotLive { state } => {
                write!(f, "this node is {state}, not live: ask the live node")
            }
            AdminError::NoQueue(q) => write!(f, "no queue named {q:?}"),
            AdminError::ConsumersAttached { queue, consumers } => write!(
                f,
                "queue {queue:?} has {consumers} consumer(s); close them first"
            ),
            AdminError::NotDurable(q) => {
                write!(f, "queue {q:?} belongs to a connection and ends with it")
            }
            AdminError::BadTarget { to, why } => write!(f, "cannot move to {to:?}: {why}"),
            AdminError::Abandoned => write!(
                f,
                "the node stepped down before the change was durable; check the live node"
            ),
        }
    }
}

/// One message as browse shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowsedMessage {
    pub id: String,
    pub address: String,
    /// Where it was sent, when this queue is not of that address (a dead
    /// letter, an expired message).
    pub original_address: Option<String>,
    pub priority: u8,
    pub deliveries: u32,
    pub state: &'static str,
    pub persistent: bool,
    pub headers: Vec<(String, String)>,
    pub body_bytes: usize,
    pub body_preview: String,
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) | Value::Symbol(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Long(n) | Value::Timestamp(n) => n.to_string(),
        Value::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

impl Node {
    fn admin_queue(&self, name: &str) -> Result<Id, AdminError> {
        self.broker
            .queue_by_name(name)
            .map(|q| q.id)
            .ok_or_else(|| AdminError::NoQueue(name.to_owned()))
    }

    /// The first `limit` messages of a queue in delivery order (waiting
    /// ones first, by priority and arrival; then those out with consumers).
    pub fn browse(&self, queue: &str, limit: usize) -> Result<Vec<BrowsedMessage>, AdminError> {
        // A backup's broker is empty or stale: the live node has the truth.
        if self.state != HaState::Live {
            return Err(AdminError::NotLive {
                state: self.state.name(),
            });
        }
        let qid = self.admin_queue(queue)?;
        let q = self
            .broker
            .queue(qid)
            .ok_or(AdminError::NoQueue(queue.to_owned()))?;
        let limit = limit.min(BROWSE_MAX);
        let ready = q.ready.values().copied();
        let others = q
            .refs
            .iter()
            .filter(|(_, r)| r.state != RefState::Ready)
            .map(|(id, _)| *id);
        let mut out = Vec::new();
        for id in ready.chain(others).take(limit) {
            let (Some(r), Some(m)) = (q.refs.get(&id), self.broker.message(id)) else {
                continue;
            };
            let raw = match &m.body {
                Body::Text(b) | Body::Bytes(b) => b.clone(),
                Body::Value(v) => format!("{v:?}").into_bytes().into(),
            };
            let preview = &raw[..raw.len().min(BODY_PREVIEW_BYTES)];
            out.push(BrowsedMessage {
                id: id.to_string(),
                address: q.address.clone(),
                original_address: (m.address != q.address).then(|| m.address.clone()),
                priority: r.priority,
                deliveries: r.deliveries,
                state: match r.state {
                    RefState::Ready => "ready",
                    RefState::Scheduled { .. } => "scheduled",
                    RefState::Delivered { .. } => "delivered",
                    RefState::Settling => "settling",
                },
                persistent: r.durable,
                headers: m
                    .application
                    .iter()
                    .map(|(k, v)| (k.clone(), value_text(v)))
                    .collect(),
                body_bytes: m.body.size_bytes(),
                body_preview: String::from_utf8_lossy(preview).into_owned(),
            });
        }
        Ok(out)
    }

    /// Carries out a management change; the answer comes as
    /// `Output::Admin { id, .. }` once the change is durable (or at once
    /// when refused).
    pub(crate) fn on_admin(&mut self, id: u64, op: AdminOp) {
        if self.state != HaState::Live {
            let state = self.state.name();
            self.admin_answer(id, Err(AdminError::NotLive { state }));
            return;
        }
        let result = match op {
            AdminOp::Purge { queue } => self.admin_purge(&queue),
            AdminOp::Move { queue, to } => {
                // A destination spelled for a client (`/queue/x`) names
                // the address `x`.
                let prefix = &self.config.destinations.anycast_prefix;
                let to = match to.strip_prefix(prefix.as_str()) {
                    Some(bare) if !prefix.is_empty() => bare.to_owned(),
                    _ => to,
                };
                self.admin_move(&queue, Some(&to))
            }
            AdminOp::Retry { queue } => self.admin_move(&queue, None),
            AdminOp::DeleteQueue { queue } => self.admin_delete(&queue),
        };
        match result {
            Ok((entries, effects, reply)) => {
                if self.bug(PlantedBug::AdminAnswerBeforeDurable) {
                    // Planted bug: "done" before the journal has it (the
                    // answer at completion comes second and is ignored).
                    self.admin_answer(id, Ok(reply.clone()));
                }
                self.submit(entries, Work::Admin { id, reply, effects })
            }
            Err(e) => self.admin_answer(id, Err(e)),
        }
    }

    pub(crate) fn admin_answer(&mut self, id: u64, result: Result<AdminReply, AdminError>) {
        self.outputs.push_back(Output::Admin { id, result });
    }

    /// Takes up to `ADMIN_BATCH_MAX` waiting references out of line
    /// (settling), so nothing delivers them while the change is on its way.
    /// Only those `take` accepts; the others stay as they are.
    fn take_waiting(&mut self, qid: Id, take: impl Fn(&Node, Id) -> bool) -> (Vec<RefKey>, u64) {
        let Some(q) = self.broker.queues.get(&qid) else {
            return (Vec::new(), 0);
        };
        let waiting: Vec<Id> = q
            .refs
            .iter()
            .filter(|(_, r)| matches!(r.state, RefState::Ready | RefState::Scheduled { .. }))
            .map(|(id, _)| *id)
            .filter(|id| take(self, *id))
            .collect();
        let Some(q) = self.broker.queues.get_mut(&qid) else {
            return (Vec::new(), 0);
        };
        let remaining = waiting.len().saturating_sub(ADMIN_BATCH_MAX) as u64;
        let mut keys = Vec::new();
        for id in waiting.into_iter().take(ADMIN_BATCH_MAX) {
            let Some(r) = q.refs.get(&id) else { continue };
            let (durable, scheduled) = (r.durable, r.state);
            if let RefState::Scheduled { at } = scheduled {
                self.broker.scheduled.remove(&(at, qid, id));
            }
            q.unready(id, RefState::Settling);
            keys.push(RefKey {
                message: id,
                queue: qid,
                durable,
            });
        }
        (keys, remaining)
    }

    fn admin_purge(&mut self, queue: &str) -> AdminPlan {
        let qid = self.admin_queue(queue)?;
        let (keys, remaining) = self.take_waiting(qid, |_, _| true);
        self.broker.count_settled(&keys, Settled::Acknowledged);
        let entries = self.broker.settle_entries(&keys);
        let purged = keys.len() as u64;
        let effects = Effects {
            drops: keys.into_iter().filter(|k| !k.durable).collect(),
            ..Effects::default()
        };
        Ok((entries, effects, AdminReply::Purged { purged, remaining }))
    }

    /// `to`: one target address; `None`: each message's own address.
    fn admin_move(&mut self, queue: &str, to: Option<&str>) -> AdminPlan {
        let qid = self.admin_queue(queue)?;
        if let Some(to) = to {
            self.check_move_target(qid, to)?;
        }
        // Where each message goes: `to`, or back to its own address if
        // that can take it (messages with nowhere to go stay, untouched).
        let target = |n: &Node, id: Id| -> Option<String> {
            match to {
                Some(t) => Some(t.to_owned()),
                None => n
                    .broker
                    .message(id)
                    .map(|m| m.address.clone())
                    .filter(|a| n.check_move_target(qid, a).is_ok()),
            }
        };
        let waiting = self.broker.queue(qid).map_or(0, |q| {
            q.refs
                .values()
                .filter(|r| matches!(r.state, RefState::Ready | RefState::Scheduled { .. }))
                .count()
        }) as u64;
        let (keys, remaining) = self.take_waiting(qid, |n, id| target(n, id).is_some());
        let skipped = waiting - keys.len() as u64 - remaining;
        let mut entries = Vec::new();
        let mut effects = Effects::default();
        let moved = keys.len() as u64;
        // Group by target so each target's queue is planned once.
        let mut by_target: std::collections::BTreeMap<String, Vec<RefKey>> = Default::default();
        for k in keys {
            if let Some(t) = target(self, k.message) {
                by_target.entry(t).or_default().push(k);
            }
        }
        for (target, keys) in by_target {
            let (e, moves) = self.move_refs(&target, &keys);
            entries.extend(e);
            effects.moves.extend(moves);
        }
        Ok((
            entries,
            effects,
            AdminReply::Moved {
                moved,
                skipped,
                remaining,
            },
        ))
    }

    /// Messages move to the anycast queue of an address: not into the
    /// queue they are in, and not to a multicast address (its copies live
    /// in subscription queues, which a move cannot name).
    fn check_move_target(&self, from: Id, to: &str) -> Result<(), AdminError> {
        let bad = |why| {
            Err(AdminError::BadTarget {
                to: to.to_owned(),
                why,
            })
        };
        if to.is_empty() {
            return bad("the address is empty");
        }
        let topics = &self.config.destinations.multicast_prefix;
        if !topics.is_empty() && to.starts_with(topics.as_str()) {
            return bad("it is a multicast address");
        }
        if self.broker.queue_by_name(to).is_some_and(|q| q.id == from) {
            return bad("that is the queue the messages are in");
        }
        if self.broker.address_routing(to) == Some(Routing::Multicast) {
            return bad("it is a multicast address");
        }
        Ok(())
    }

    fn admin_delete(&mut self, queue: &str) -> AdminPlan {
        let qid = self.admin_queue(queue)?;
        let q = self
            .broker
            .queue(qid)
            .ok_or(AdminError::NoQueue(queue.to_owned()))?;
        if !q.durable() {
            return Err(AdminError::NotDurable(queue.to_owned()));
        }
        if q.consumer_count() > 0 {
            return Err(AdminError::ConsumersAttached {
                queue: queue.to_owned(),
                consumers: q.consumer_count(),
            });
        }
        let messages = q.depth() as u64;
        let entries = vec![Entry::Tombstone(Key::Queue(q.name.clone()))];
        Ok((
            entries,
            Effects::default(),
            AdminReply::Deleted { messages },
        ))
    }
}

type AdminPlan = Result<(Vec<Entry>, Effects, AdminReply), AdminError>;
