//! Management operations carried out by the node (types and limits in
//! `management.rs`): see there for what each does.

use super::config::PlantedBug;
use super::management::{
    AdminError, AdminOp, AdminReply, BrowsedMessage, ADMIN_BATCH_MAX, BODY_PREVIEW_BYTES,
    BROWSE_MAX,
};
use super::node::Node;
use super::ports::Output;
use super::work::{Effects, Work};
use crate::broker::queue::RefState;
use crate::broker::{RefKey, Settled};
use crate::ha::HaState;
use crate::ids::Id;
use crate::journal::{Entry, Key};
use crate::message::{Body, Routing, Value};

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
            let paged = self.broker.is_paged(id);
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
                paged,
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
