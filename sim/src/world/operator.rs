//! The operator at work: its requests as events in the run (what it
//! keeps is in `operator_log.rs`).

use halyard_core::node::{AdminError, AdminOp, AdminReply, Input};

use super::events::Event;
use super::operator_log::PURGED_QUEUE;
use super::state::World;

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
