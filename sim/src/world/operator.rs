//! The operator: someone using the management API during the run. Every
//! second or so it asks a node picked at random (live or not: the
//! refusals are part of the test) to purge the queue `purged`, which only
//! the producer `pp0` fills and nobody consumes. The answers are kept for
//! the checker's purge rule (`checker::check_purges`): a purge answered
//! "done" must have happened for good, whatever crashed afterwards.

use std::collections::BTreeMap;

use halyard_core::node::{AdminError, AdminOp, AdminReply, Input};
use halyard_core::Millis;

use super::events::Event;
use super::state::World;
use crate::rng::Rng;

/// The queue the operator purges (address `purged`, destination
/// `/queue/purged`).
pub(crate) const PURGED_QUEUE: &str = "purged";
/// Mixed into the seed for the operator's own generator, so its choices
/// draw from none of the world's.
const OPERATOR_SEED: u64 = 0x0be7_a70e_5eed_0000;

/// What the operator asked and was told.
#[derive(Default)]
pub(crate) struct Operator {
    pub(crate) rng: Option<Rng>,
    next_id: u64,
    /// Answers by request id: (node, time, result). The first answer to a
    /// request counts (a second would be a bug the checker need not see).
    pub(crate) answers: BTreeMap<u64, (usize, Millis, Result<AdminReply, AdminError>)>,
    pub(crate) asked: u64,
}

impl Operator {
    pub(crate) fn new(seed: u64) -> Operator {
        Operator {
            rng: Some(Rng::new(seed ^ OPERATOR_SEED)),
            ..Operator::default()
        }
    }

    /// Purged messages the operator was told about (answers "done").
    pub(crate) fn purged(&self) -> u64 {
        self.answers
            .values()
            .filter_map(|(_, _, r)| match r {
                Ok(AdminReply::Purged { purged, .. }) => Some(*purged),
                _ => None,
            })
            .sum()
    }

    pub(crate) fn refused(&self) -> u64 {
        self.answers.values().filter(|(_, _, r)| r.is_err()).count() as u64
    }
}

impl World {
    /// The first purge, if the run has an operator.
    pub(super) fn start_operator(&mut self) {
        if let Some(r) = self.operator.rng.as_mut() {
            let t = r.range(1_000, 2_000);
            self.at(t, Event::Operator);
        }
    }

    /// One purge request to a node picked at random; the next one later.
    pub(super) fn operator_acts(&mut self) {
        let nodes = self.nodes.len() as u64;
        let Some(r) = self.operator.rng.as_mut() else {
            return;
        };
        let node = r.range(0, nodes - 1) as usize;
        let next = self.now + r.range(400, 1_600);
        // Until the producers are done, then once more after they are, so
        // the end state has seen a purge too.
        if self.now < self.cfg.fault_until_ms + 10_000 {
            self.at(next, Event::Operator);
        }
        // A node that is down cannot be asked, a paused one does not
        // answer in time (the HTTP request fails either way).
        let host = &self.nodes[node];
        if host.node.is_none() || host.paused_until.is_some_and(|u| self.now < u) {
            return;
        }
        self.operator.next_id += 1;
        self.operator.asked += 1;
        let id = self.operator.next_id;
        self.feed(
            node,
            Input::Admin {
                id,
                op: AdminOp::Purge {
                    queue: PURGED_QUEUE.into(),
                },
            },
        );
    }

    /// An answer from node `i`.
    pub(super) fn operator_heard(
        &mut self,
        i: usize,
        id: u64,
        result: Result<AdminReply, AdminError>,
    ) {
        if let Ok(AdminReply::Purged { purged, .. }) = &result {
            let name = self.nodes[i].name.clone();
            self.log(
                &name,
                format!("operator: purged {purged} from {PURGED_QUEUE}"),
            );
        }
        let now = self.now;
        self.operator.answers.entry(id).or_insert((i, now, result));
    }

    /// Messages in the purged queue on the node that is live now (the one
    /// with the highest epoch if several think so), or `None` if none is.
    pub(crate) fn purged_queue_depth(&self) -> Option<u64> {
        let live = self
            .nodes
            .iter()
            .filter_map(|h| h.node.as_ref())
            .filter(|n| n.is_live())
            .max_by_key(|n| n.epoch())?;
        Some(
            live.stats(usize::MAX)
                .queues
                .iter()
                .find(|q| q.name == PURGED_QUEUE)
                .map_or(0, |q| q.messages),
        )
    }
}
