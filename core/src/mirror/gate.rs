//! The sync gate: with `--mirror-sync`, the journal's answer that a batch
//! is durable reaches the node only once every in-sync peer has the
//! journal group that holds it durable too. So a RECEIPT, a COMMIT or an
//! AMQP `accepted` (each sent on that answer) means "on this broker's disk
//! and on every broker the lock service lists as in sync".
//!
//! The journal thread tells the gate, in order: a group of the stream was
//! written locally ([`SyncGate::written`], with the tickets it answers),
//! then the journal's events ([`SyncGate::event`]). The gate passes events
//! on in the order they came, holding the first `Durable` whose group some
//! required peer has not acknowledged, and everything behind it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::ids::Ticket;
use crate::node::{Input, JournalEvent};

/// Events the gate holds at most (the journal thread waits beyond it).
pub const GATE_HELD_MAX: usize = 1 << 20;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct SyncGate {
    /// Lock epoch of the stream the acks and groups belong to.
    epoch: u64,
    /// Peers a durable answer waits for.
    required: BTreeSet<String>,
    /// Newest group each peer acknowledged in this epoch's stream.
    acked: BTreeMap<String, u64>,
    /// The stream group of each ticket written and not yet answered.
    ticket_seq: BTreeMap<Ticket, u64>,
    /// Events not passed on yet, with the group each waits for.
    held: VecDeque<(Option<u64>, Input)>,
    /// Newest group written.
    written: u64,
    /// The planted bug `ReceiptBeforePeerAck` (simulator tests only).
    #[cfg(feature = "planted-bugs")]
    planted_early: bool,
}

impl SyncGate {
    pub fn new() -> SyncGate {
        SyncGate::default()
    }

    /// A new stream (the broker went active under `epoch`): groups count
    /// from 1 again and earlier acks mean nothing. What the old stream
    /// still held is dropped ([`SyncGate::end_stream`]).
    pub fn start_stream(&mut self, epoch: u64) {
        self.end_stream();
        self.epoch = epoch;
        self.written = 0;
        self.required.clear();
    }

    /// The stream ended (the broker stepped down): the durable answers
    /// still waiting for peers are dropped, never passed on. The node
    /// stepped down and receipts none of them; passing them on would let
    /// it receipt a change no in-sync peer has, if it read them before
    /// the news that it lost the lock. Other events stay, in order.
    pub fn end_stream(&mut self) {
        let released = self.released_up_to();
        self.held
            .retain(|(waits, _)| waits.is_none_or(|seq| seq <= released));
        for (waits, _) in self.held.iter_mut() {
            *waits = None;
        }
        self.ticket_seq.clear();
        self.acked.clear();
    }

    /// The peers durable answers wait for (the lock coordinator's
    /// `RequiredAcks` for `epoch`); other epochs are ignored.
    pub fn set_required(&mut self, epoch: u64, peers: BTreeSet<String>) {
        if epoch == self.epoch {
            self.required = peers;
        }
    }

    /// Group `seq` of the stream was written locally; it answers `tickets`.
    pub fn written(&mut self, seq: u64, tickets: &[Ticket]) {
        assert!(
            seq == self.written + 1,
            "group {seq} after {}",
            self.written
        );
        self.written = seq;
        for t in tickets {
            self.ticket_seq.insert(*t, seq);
        }
    }

    /// A journal event (or any input the journal thread sends), in order.
    /// Several at once (`Input::Journals`) are held and passed on one by
    /// one, each `Durable` waiting for its own group.
    pub fn event(&mut self, input: Input) {
        if let Input::Journals(evs) = input {
            for ev in evs {
                self.event(Input::Journal(ev));
            }
            return;
        }
        let waits = match &input {
            Input::Journal(JournalEvent::Durable { ticket }) => self.ticket_seq.remove(ticket),
            _ => None,
        };
        self.held.push_back((waits, input));
        assert!(self.held.len() <= GATE_HELD_MAX, "sync gate overfull");
    }

    /// `peer` has every group up to `seq` of `epoch`'s stream durable.
    pub fn acked(&mut self, peer: &str, epoch: u64, seq: u64) {
        if epoch != self.epoch {
            return;
        }
        let a = self.acked.entry(peer.to_string()).or_insert(0);
        *a = (*a).max(seq);
    }

    /// The newest group every required peer has.
    fn released_up_to(&self) -> u64 {
        self.required
            .iter()
            .map(|p| self.acked.get(p).copied().unwrap_or(0))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Switches the planted bug `ReceiptBeforePeerAck` on.
    #[cfg(feature = "planted-bugs")]
    pub fn plant_release_early(&mut self) {
        self.planted_early = true;
    }

    #[cfg(feature = "planted-bugs")]
    fn waits_for_peers(&self) -> bool {
        !self.planted_early
    }

    #[cfg(not(feature = "planted-bugs"))]
    fn waits_for_peers(&self) -> bool {
        true
    }

    /// The next event the node may have.
    pub fn poll(&mut self) -> Option<Input> {
        let (waits, _) = self.held.front()?;
        if self.waits_for_peers() && waits.is_some_and(|seq| seq > self.released_up_to()) {
            return None;
        }
        self.held.pop_front().map(|(_, input)| input)
    }

    /// Events held (for metrics and logs).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Groups written that some required peer has not acknowledged.
    pub fn unacknowledged(&self) -> u64 {
        self.written
            .saturating_sub(self.released_up_to().min(self.written))
    }

    /// Newest group written in this stream.
    pub fn written_seq(&self) -> u64 {
        self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn durable(t: u64) -> Input {
        Input::Journal(JournalEvent::Durable { ticket: Ticket(t) })
    }

    fn drain(g: &mut SyncGate) -> Vec<Input> {
        std::iter::from_fn(|| g.poll()).collect()
    }

    fn peers(p: &[&str]) -> BTreeSet<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_durable_answer_waits_for_every_required_peer() {
        let mut g = SyncGate::new();
        g.start_stream(7);
        g.set_required(7, peers(&["b", "c"]));
        g.written(1, &[Ticket(10), Ticket(11)]);
        g.event(durable(10));
        g.event(durable(11));
        assert!(drain(&mut g).is_empty());
        g.acked("b", 7, 1);
        assert!(drain(&mut g).is_empty(), "c has not acknowledged");
        g.acked("c", 7, 1);
        assert_eq!(drain(&mut g), vec![durable(10), durable(11)]);
    }

    #[test]
    fn answers_that_come_together_are_held_one_by_one() {
        // The journal thread sends a group commit's answers as one input;
        // each durable answer still waits for its own group.
        let mut g = SyncGate::new();
        g.start_stream(3);
        g.set_required(3, peers(&["b"]));
        g.written(1, &[Ticket(1)]);
        g.written(2, &[Ticket(2)]);
        g.event(Input::Journals(vec![
            JournalEvent::Durable { ticket: Ticket(1) },
            JournalEvent::Durable { ticket: Ticket(2) },
            JournalEvent::Ready,
        ]));
        assert_eq!(g.held(), 3);
        assert!(drain(&mut g).is_empty());
        g.acked("b", 3, 1);
        assert_eq!(drain(&mut g), vec![durable(1)]);
        g.acked("b", 3, 2);
        assert_eq!(
            drain(&mut g),
            vec![durable(2), Input::Journal(JournalEvent::Ready)]
        );
    }

    #[test]
    fn events_keep_their_order_behind_a_held_answer() {
        let mut g = SyncGate::new();
        g.start_stream(1);
        g.set_required(1, peers(&["b"]));
        g.written(1, &[Ticket(1)]);
        g.event(durable(1));
        let loaded = Input::Journal(JournalEvent::Ready);
        g.event(loaded.clone());
        assert!(drain(&mut g).is_empty());
        g.acked("b", 1, 1);
        assert_eq!(drain(&mut g), vec![durable(1), loaded]);
    }

    #[test]
    fn a_peer_leaving_the_set_releases_what_waited_for_it() {
        let mut g = SyncGate::new();
        g.start_stream(2);
        g.set_required(2, peers(&["b"]));
        g.written(1, &[Ticket(5)]);
        g.event(durable(5));
        assert!(drain(&mut g).is_empty());
        assert_eq!(g.unacknowledged(), 1);
        g.set_required(2, BTreeSet::new());
        assert_eq!(drain(&mut g), vec![durable(5)]);
    }

    #[test]
    fn a_stream_that_ends_drops_the_answers_still_waiting_and_keeps_the_rest() {
        let mut g = SyncGate::new();
        g.start_stream(1);
        g.set_required(1, peers(&["b"]));
        g.written(1, &[Ticket(1)]);
        g.written(2, &[Ticket(2)]);
        g.event(durable(1));
        g.event(durable(2));
        let other = Input::Journal(JournalEvent::Ready);
        g.event(other.clone());
        g.acked("b", 1, 1);
        g.end_stream();
        // Group 1 was acknowledged: its answer goes; group 2's never does.
        assert_eq!(drain(&mut g), vec![durable(1), other]);
        g.start_stream(2);
        g.written(1, &[Ticket(3)]);
        g.event(durable(3));
        assert_eq!(
            drain(&mut g),
            vec![durable(3)],
            "no peer required yet in epoch 2"
        );
    }

    #[test]
    fn acks_of_another_epoch_release_nothing() {
        let mut g = SyncGate::new();
        g.start_stream(3);
        g.set_required(3, peers(&["b"]));
        g.written(1, &[Ticket(1)]);
        g.event(durable(1));
        g.acked("b", 2, 100);
        g.set_required(2, BTreeSet::new());
        assert!(drain(&mut g).is_empty());
    }

    #[test]
    fn with_no_required_peer_answers_pass_at_once() {
        let mut g = SyncGate::new();
        g.start_stream(1);
        g.written(1, &[Ticket(1)]);
        g.event(durable(1));
        assert_eq!(drain(&mut g), vec![durable(1)]);
        assert_eq!(g.held(), 0);
    }

    #[test]
    fn a_later_group_is_held_while_an_earlier_one_is_released() {
        let mut g = SyncGate::new();
        g.start_stream(1);
        g.set_required(1, peers(&["b"]));
        g.written(1, &[Ticket(1)]);
        g.written(2, &[Ticket(2)]);
        g.event(durable(1));
        g.event(durable(2));
        g.acked("b", 1, 1);
        assert_eq!(drain(&mut g), vec![durable(1)]);
        g.acked("b", 1, 2);
        assert_eq!(drain(&mut g), vec![durable(2)]);
    }
}
