//! The source end of one mirror link (the active broker, towards one
//! peer), sans-IO: what to send next, from the groups the journal wrote
//! ([`Outbox`]) or a snapshot of the journal, and what the peer's
//! acknowledgements mean (acked groups, caught up).
//!
//! A link starts with `Hello`; the peer's `Welcome` names where its journal
//! stands in a stream. If that is this stream (same lock epoch) and the
//! outbox still holds every group after it, the link resumes there;
//! otherwise the peer's journal is replaced by a snapshot of this broker's
//! journal, and the stream follows from the group the snapshot ends at. A
//! peer is *caught up* once it acknowledged everything up to the point
//! where its link started streaming.

use std::collections::VecDeque;
use std::sync::Arc;

use super::wire::{Delivery, MirrorFrame, Position};
use crate::journal::group_commit::EncodedEntry;

/// Bytes of groups the outbox keeps for peers behind (past it, a peer
/// that falls further behind gets a snapshot instead).
pub const OUTBOX_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Transfers a link has unacknowledged at most, whatever the peer grants.
pub const WINDOW_MAX: u32 = 1024;

/// One journal group of the stream.
#[derive(Debug)]
pub struct Group {
    pub seq: u64,
    pub batches: Vec<Vec<EncodedEntry>>,
    pub bytes: usize,
}

/// The stream's recent groups, shared by every link of the source.
#[derive(Debug, Default)]
pub struct Outbox {
    epoch: u64,
    groups: VecDeque<Arc<Group>>,
    bytes: usize,
    /// Newest group written (0: none yet in this stream).
    last: u64,
}

impl Outbox {
    pub fn new(epoch: u64) -> Outbox {
        Outbox {
            epoch,
            ..Outbox::default()
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn last_seq(&self) -> u64 {
        self.last
    }

    /// Group `seq` (the next one) was written.
    pub fn push(&mut self, seq: u64, batches: Vec<Vec<EncodedEntry>>) {
        assert_eq!(seq, self.last + 1, "groups out of order");
        let bytes = batches
            .iter()
            .flatten()
            .map(EncodedEntry::bytes)
            .sum::<usize>()
            + 64;
        self.last = seq;
        self.bytes += bytes;
        self.groups.push_back(Arc::new(Group {
            seq,
            batches,
            bytes,
        }));
        while self.bytes > OUTBOX_BYTES_MAX && self.groups.len() > 1 {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(g) = self.groups.pop_front() {
            self.bytes -= g.bytes;
        }
    }

    /// Forgets groups up to `seq` (every link has them).
    pub fn trim_to(&mut self, seq: u64) {
        while self.groups.front().is_some_and(|g| g.seq <= seq) {
            self.pop_front();
        }
    }

    /// Whether every group after `seq` is still here.
    pub fn has_after(&self, seq: u64) -> bool {
        seq == self.last || self.groups.front().is_some_and(|g| g.seq <= seq + 1)
    }

    pub fn get(&self, seq: u64) -> Option<Arc<Group>> {
        let first = self.groups.front()?.seq;
        let i = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.groups.get(i).cloned()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Groups kept.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }
}

/// Where a link is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `Hello` sent; waiting for the peer's `Welcome`.
    Greeting,
    /// Sending a snapshot of the journal (the driver feeds its chunks).
    Snapshot,
    /// Sending groups from `next` on.
    Streaming,
}

/// What a link tells its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The peer's name, from its `Welcome`.
    Named(String),
    /// Right after `Named`: whether the peer asks for the active role back
    /// once in sync (failback; a welcome without the word: no).
    Preference { peer: String, prefers_active: bool },
    /// Take a snapshot of the journal and feed it with
    /// [`SourceLink::snapshot_chunk`] / [`SourceLink::snapshot_end`].
    SnapshotWanted,
    /// The peer has every group up to `seq` durable.
    Acked(u64),
    /// The peer has everything up to where its link started streaming.
    CaughtUp,
}

/// What a delivery in flight was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    Group(u64),
    Chunk,
    End(u64),
}

/// Why a link must close.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the peer acknowledged delivery {0}, which was not sent")]
    UnknownAck(u32),
    #[error("the peer sent {0} on a link it receives")]
    Unexpected(&'static str),
    #[error("the peer closed the link: {0}")]
    Closed(String),
}

/// See the module documentation.
#[derive(Debug)]
pub struct SourceLink {
    node: String,
    epoch: u64,
    phase: Phase,
    next: u64,
    window: u32,
    next_delivery: u32,
    in_flight: VecDeque<(u32, Sent)>,
    acked: u64,
    caught_up_at: Option<u64>,
    out: VecDeque<MirrorFrame>,
    events: VecDeque<LinkEvent>,
}

impl SourceLink {
    /// A new link of `node`'s stream under lock `epoch`; its first frame
    /// is the `Hello`.
    pub fn new(node: &str, epoch: u64) -> SourceLink {
        let mut l = SourceLink {
            node: node.to_string(),
            epoch,
            phase: Phase::Greeting,
            next: 0,
            window: 0,
            next_delivery: 0,
            in_flight: VecDeque::new(),
            acked: 0,
            caught_up_at: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
        };
        l.out.push_back(MirrorFrame::Hello {
            node: l.node.clone(),
            epoch,
        });
        l
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Newest group the peer acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// A frame from the peer.
    pub fn on_frame(&mut self, frame: MirrorFrame, outbox: &Outbox) -> Result<(), LinkError> {
        match frame {
            MirrorFrame::Welcome {
                node,
                position,
                prefers_active,
            } => {
                if self.phase != Phase::Greeting {
                    return Err(LinkError::Unexpected("a second welcome"));
                }
                self.events.push_back(LinkEvent::Named(node.clone()));
                self.events.push_back(LinkEvent::Preference {
                    peer: node,
                    prefers_active,
                });
                self.on_welcome(position, outbox);
            }
            MirrorFrame::Credit { credit } => self.window = credit.min(WINDOW_MAX),
            MirrorFrame::Ack { first, last } => self.on_ack(first, last)?,
            MirrorFrame::Heartbeat => {}
            MirrorFrame::Close { error } => {
                return Err(LinkError::Closed(
                    error.unwrap_or_else(|| "no reason".into()),
                ))
            }
            MirrorFrame::Hello { .. } => return Err(LinkError::Unexpected("hello")),
            MirrorFrame::Transfer { .. } => return Err(LinkError::Unexpected("a transfer")),
        }
        Ok(())
    }

    fn on_welcome(&mut self, position: Option<Position>, outbox: &Outbox) {
        match position {
            Some(p)
                if p.epoch == self.epoch
                    && p.seq <= outbox.last_seq()
                    && outbox.has_after(p.seq) =>
            {
                self.acked = p.seq;
                self.start_streaming(p.seq + 1, outbox.last_seq());
            }
            _ => {
                self.phase = Phase::Snapshot;
                self.events.push_back(LinkEvent::SnapshotWanted);
            }
        }
    }

    fn start_streaming(&mut self, next: u64, caught_up_at: u64) {
        self.phase = Phase::Streaming;
        self.next = next;
        self.caught_up_at = Some(caught_up_at);
        self.check_caught_up();
    }

    fn check_caught_up(&mut self) {
        if self.caught_up_at.is_some_and(|at| self.acked >= at) {
            self.caught_up_at = None;
            self.events.push_back(LinkEvent::CaughtUp);
        }
    }

    fn on_ack(&mut self, first: u32, last: u32) -> Result<(), LinkError> {
        // Deliveries are acknowledged in order: `last` settles everything
        // sent before it too.
        if !self.in_flight.iter().any(|(d, _)| *d == last) {
            return Err(LinkError::UnknownAck(first));
        }
        while let Some((d, sent)) = self.in_flight.pop_front() {
            match sent {
                Sent::Group(seq) | Sent::End(seq) => self.acked = self.acked.max(seq),
                Sent::Chunk => {}
            }
            if d == last {
                break;
            }
        }
        self.events.push_back(LinkEvent::Acked(self.acked));
        self.check_caught_up();
        Ok(())
    }

    /// Whether a snapshot chunk may be sent now (window room).
    pub fn can_send(&self) -> bool {
        (self.in_flight.len() as u32) < self.window
    }

    /// A chunk of the snapshot (in the journal's order).
    pub fn snapshot_chunk(&mut self, batches: Vec<Vec<EncodedEntry>>) {
        assert_eq!(self.phase, Phase::Snapshot, "a chunk outside a snapshot");
        self.send(Sent::Chunk, Delivery::SnapshotChunk { batches });
    }

    /// The snapshot holds every group up to `seq`; streaming follows.
    pub fn snapshot_end(&mut self, seq: u64) {
        assert_eq!(
            self.phase,
            Phase::Snapshot,
            "a snapshot end outside a snapshot"
        );
        self.send(Sent::End(seq), Delivery::SnapshotEnd { seq });
        self.start_streaming(seq + 1, seq);
    }

    fn send(&mut self, sent: Sent, what: Delivery) {
        let delivery = self.next_delivery;
        self.next_delivery = self.next_delivery.wrapping_add(1);
        self.in_flight.push_back((delivery, sent));
        self.out.push_back(MirrorFrame::Transfer { delivery, what });
    }

    /// The next frame to send: queued frames, then groups from the outbox
    /// while the window has room. `Err(seq)`: group `seq` is no longer in
    /// the outbox (the peer fell too far behind): close and reconnect,
    /// which sends a snapshot.
    pub fn poll_frame(&mut self, outbox: &Outbox) -> Result<Option<MirrorFrame>, u64> {
        if let Some(f) = self.out.pop_front() {
            return Ok(Some(f));
        }
        if self.phase != Phase::Streaming || self.next > outbox.last_seq() || !self.can_send() {
            return Ok(None);
        }
        let seq = self.next;
        let g = outbox.get(seq).ok_or(seq)?;
        self.next += 1;
        self.send(
            Sent::Group(seq),
            Delivery::Batch {
                seq,
                batches: g.batches.clone(),
            },
        );
        Ok(self.out.pop_front())
    }

    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn entries(n: u8) -> Vec<Vec<EncodedEntry>> {
        vec![vec![EncodedEntry {
            key: Bytes::from(vec![b'k', n]),
            value: Some(Bytes::from_static(b"v")),
        }]]
    }

    fn frames(l: &mut SourceLink, o: &Outbox) -> Vec<MirrorFrame> {
        std::iter::from_fn(|| l.poll_frame(o).unwrap()).collect()
    }

    fn events(l: &mut SourceLink) -> Vec<LinkEvent> {
        std::iter::from_fn(|| l.poll_event()).collect()
    }

    fn welcome(position: Option<Position>) -> MirrorFrame {
        MirrorFrame::Welcome {
            node: "b".into(),
            position,
            prefers_active: false,
        }
    }

    #[test]
    fn a_peer_in_this_stream_resumes_after_its_position() {
        let mut o = Outbox::new(5);
        for s in 1..=3 {
            o.push(s, entries(s as u8));
        }
        let mut l = SourceLink::new("a", 5);
        assert!(matches!(
            frames(&mut l, &o)[..],
            [MirrorFrame::Hello { epoch: 5, .. }]
        ));
        l.on_frame(welcome(Some(Position { epoch: 5, seq: 1 })), &o)
            .unwrap();
        l.on_frame(MirrorFrame::Credit { credit: 10 }, &o).unwrap();
        let sent = frames(&mut l, &o);
        let seqs: Vec<u64> = sent
            .iter()
            .map(|f| match f {
                MirrorFrame::Transfer {
                    what: Delivery::Batch { seq, .. },
                    ..
                } => *seq,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seqs, [2, 3]);
        assert_eq!(
            events(&mut l),
            [
                LinkEvent::Named("b".into()),
                LinkEvent::Preference {
                    peer: "b".into(),
                    prefers_active: false
                }
            ]
        );
        l.on_frame(MirrorFrame::Ack { first: 0, last: 1 }, &o)
            .unwrap();
        assert_eq!(events(&mut l), [LinkEvent::Acked(3), LinkEvent::CaughtUp]);
    }

    #[test]
    fn a_peer_of_another_stream_or_too_far_behind_gets_a_snapshot() {
        let mut o = Outbox::new(5);
        o.push(1, entries(1));
        for position in [
            None,
            Some(Position { epoch: 4, seq: 1 }),
            Some(Position { epoch: 5, seq: 9 }),
        ] {
            let mut l = SourceLink::new("a", 5);
            frames(&mut l, &o);
            l.on_frame(welcome(position), &o).unwrap();
            assert_eq!(l.phase(), Phase::Snapshot, "{position:?}");
            assert!(events(&mut l).contains(&LinkEvent::SnapshotWanted));
        }
    }

    #[test]
    fn a_snapshot_then_the_groups_after_it_then_caught_up() {
        let mut o = Outbox::new(2);
        let mut l = SourceLink::new("a", 2);
        frames(&mut l, &o);
        l.on_frame(welcome(None), &o).unwrap();
        l.on_frame(MirrorFrame::Credit { credit: 2 }, &o).unwrap();
        l.snapshot_chunk(entries(0));
        o.push(1, entries(1));
        l.snapshot_end(0);
        o.push(2, entries(2));
        // Window of two: the chunk and the end, then nothing until an ack.
        assert_eq!(frames(&mut l, &o).len(), 2);
        l.on_frame(MirrorFrame::Ack { first: 0, last: 1 }, &o)
            .unwrap();
        events(&mut l);
        assert_eq!(frames(&mut l, &o).len(), 2);
        l.on_frame(MirrorFrame::Ack { first: 2, last: 3 }, &o)
            .unwrap();
        assert_eq!(l.acked(), 2);
    }

    #[test]
    fn an_ack_for_nothing_sent_closes_the_link() {
        let o = Outbox::new(1);
        let mut l = SourceLink::new("a", 1);
        assert_eq!(
            l.on_frame(MirrorFrame::Ack { first: 3, last: 3 }, &o),
            Err(LinkError::UnknownAck(3))
        );
    }

    #[test]
    fn the_outbox_keeps_a_bounded_tail() {
        let mut o = Outbox::new(1);
        let big = vec![vec![EncodedEntry {
            key: Bytes::from_static(b"k"),
            value: Some(Bytes::from(vec![0u8; 64 * 1024 * 1024])),
        }]];
        for s in 1..=6 {
            o.push(s, big.clone());
        }
        assert!(o.bytes() <= OUTBOX_BYTES_MAX);
        assert!(!o.has_after(1));
        assert!(o.has_after(6));
        assert!(o.get(6).is_some());
        o.trim_to(6);
        assert_eq!(o.bytes(), 0);
    }
}
