//! The broker's clock-driven work as the node runs it: scheduled messages
//! released when their time comes, and expired messages moved to the expiry
//! address (found by dispatch, or by the periodic scan), each a journaled
//! move in the housekeeping batch.

use super::node::Node;
use crate::broker::Settled;
use crate::ha::HaState;
use crate::Millis;

impl Node {
    /// On a tick, while live: one step of the expiry scan when it is due.
    pub(crate) fn tick_broker(&mut self) {
        if self.state != HaState::Live || !self.broker.has_expiring() {
            return;
        }
        if self.broker.take_expiry_backlog() {
            self.expiry_scan_at = self.now;
        }
        if self.now < self.expiry_scan_at {
            return;
        }
        let done = self.broker.scan_expired(self.now);
        // An unfinished scan continues at once (each step is bounded).
        self.expiry_scan_at = if done {
            self.now + self.config.broker.expiry_scan_period_ms
        } else {
            self.now
        };
    }

    /// When the broker next needs a tick: the earliest scheduled message,
    /// the next expiry scan.
    pub(crate) fn broker_deadline(&self) -> Option<Millis> {
        if self.state != HaState::Live {
            return None;
        }
        let scan = if self.broker.has_expiring() {
            Some(self.expiry_scan_at)
        } else {
            None
        };
        match (self.broker.next_scheduled(), scan) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Journals the move of references found expired to the expiry
    /// address (`Routed` there and `Acked` here, like dead-lettering), in
    /// the housekeeping batch.
    pub(crate) fn move_expired(&mut self) {
        if self.broker.take_expiry_backlog() {
            self.expiry_scan_at = self.now;
        }
        let keys = self.broker.take_expired();
        if keys.is_empty() {
            return;
        }
        let address = self.config.broker.expiry_address.clone();
        self.broker.count_settled(&keys, Settled::Expired);
        let (entries, moves) = self.move_refs(&address, &keys);
        self.housekeeping.extend(entries);
        self.housekeeping_moves.extend(moves);
    }
}
