//! The source side's hub, sans-IO: one state machine owns the stream's
//! outbox, the sync gate, the in-sync joins and one `SourceLink` per
//! configured peer. The journal (groups written, snapshots read), the
//! peers' connections, the lock coordinator (role, required peers) and a
//! heartbeat timer report here; the driver carries out the outputs (bytes
//! to a peer, a link to close, a snapshot to read, news for the
//! coordinator) and passes the gate's released journal events to the node.
//!
//! `io::mirror::hub` runs it on Tokio; the simulator runs the same machine
//! on its virtual network (sim/src/coordinator).

use std::collections::{BTreeSet, VecDeque};

use bytes::{Bytes, BytesMut};
use tracing::{info, warn};

use super::gate::GATE_HELD_MAX;
use super::{encode, Joins, LinkEvent, MirrorFrame, Outbox, Phase, SourceLink, SyncGate};
use crate::ids::Ticket;
use crate::journal::group_commit::EncodedEntry;
use crate::node::Input;
use crate::protocol::amqp::EMPTY_FRAME;

/// What the hub tells the coordinator about a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubNews {
    /// A peer's name, learned at the link's handshake.
    Known(String),
    /// The peer answered (an ack, a heartbeat).
    Heard(String),
    /// The peer has every change of this stream written until it caught up.
    CaughtUp(String),
    /// Whether the peer asks for the active role back once in sync
    /// (failback), as its link's welcome said.
    Preference { peer: String, prefers_active: bool },
}

/// What the driver carries out, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubOutput {
    /// Bytes for peer `peer`'s connection.
    Send {
        peer: usize,
        bytes: Bytes,
    },
    /// Close peer `peer`'s connection (its link ended; the connector
    /// dials again).
    Close {
        peer: usize,
    },
    /// Close every peer connection: the stream changed (a role change).
    Reconnect,
    /// Read the journal for the link `token` names and feed it back with
    /// [`MirrorHub::snapshot_chunk`] / [`MirrorHub::snapshot_end`], or
    /// [`MirrorHub::snapshot_none`] without a journal.
    Snapshot {
        token: u64,
    },
    News(HubNews),
}

/// What `/metrics` shows of the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubFigures {
    /// Groups written that the slowest peer has not acknowledged (the
    /// asynchronous window of loss); -1 while passive.
    pub unacknowledged: i64,
    pub outbox_groups: u64,
    pub outbox_bytes: u64,
    pub peers_streaming: u64,
    pub answers_held: u64,
}

/// One configured peer.
#[derive(Debug)]
struct Slot {
    addr: String,
    /// Newest group of this stream the peer acknowledged (kept across its
    /// reconnections; 0 at a new stream).
    acked: u64,
    /// The connection the link runs on (the driver numbers them).
    conn: u64,
    link: Option<SourceLink>,
    name: Option<String>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct MirrorHub {
    node: String,
    sync: bool,
    epoch: Option<u64>,
    outbox: Outbox,
    gate: SyncGate,
    slots: Vec<Slot>,
    /// Who receipts wait for: the coordinator's peers and those joining.
    joins: Joins,
    /// The coordinator's latest required peers, applied at a new stream.
    required: Option<(u64, BTreeSet<String>)>,
    out: VecDeque<HubOutput>,
}

impl MirrorHub {
    /// The hub of `node`, mirroring to `peers` (addresses; inputs name them
    /// by index), with receipts waiting for the in-sync peers if `sync`.
    pub fn new(node: &str, sync: bool, peers: &[String]) -> MirrorHub {
        MirrorHub {
            node: node.to_string(),
            sync,
            epoch: None,
            outbox: Outbox::new(0),
            gate: SyncGate::new(),
            joins: Joins::default(),
            required: None,
            slots: peers
                .iter()
                .map(|addr| Slot {
                    addr: addr.clone(),
                    acked: 0,
                    conn: 0,
                    link: None,
                    name: None,
                })
                .collect(),
            out: VecDeque::new(),
        }
    }

    /// Switches a planted bug on (simulator tests only).
    #[cfg(feature = "planted-bugs")]
    pub fn plant(&mut self, bug: crate::coordinator::PlantedBug) {
        if bug == crate::coordinator::PlantedBug::ReceiptBeforePeerAck {
            self.gate.plant_release_early();
        }
    }

    /// The node opened the journal (it went active under `epoch`, or the
    /// one known if the role change has not come yet): the stream starts
    /// here, before its first group.
    pub fn stream_opened(&mut self, epoch: Option<u64>) {
        let epoch = epoch.or(self.epoch).unwrap_or(0);
        self.epoch = Some(epoch);
        self.outbox = Outbox::new(epoch);
        self.gate.start_stream(epoch);
        self.joins.clear();
        if let Some((e, peers)) = self.required.clone() {
            self.coordinator_requires(e, peers);
        }
        for (idx, slot) in self.slots.iter_mut().enumerate() {
            slot.acked = 0;
            // A link opened before this point knows another outbox.
            if slot.link.take().is_some() {
                self.out.push_back(HubOutput::Close { peer: idx });
            }
        }
        self.pump();
    }

    /// The role changed: active under `Some(epoch)`, or passive. Every
    /// link starts again ([`HubOutput::Reconnect`]).
    pub fn role(&mut self, active: Option<u64>) {
        match active {
            Some(epoch) => {
                info!(
                    epoch,
                    peers = self.slots.len(),
                    "mirroring this broker's journal to its peers under epoch {epoch}"
                );
                // The stream itself starts when the node opens the journal
                // (`stream_opened`): resetting the outbox or the gate here,
                // seen on another channel, could come after its first
                // groups and forget them.
                self.epoch = Some(epoch);
            }
            None => {
                info!("mirror stream ended: this broker is passive");
                self.epoch = None;
                self.gate.end_stream();
                self.joins.clear();
            }
        }
        for slot in &mut self.slots {
            slot.link = None;
            slot.acked = 0;
        }
        self.out.push_back(HubOutput::Reconnect);
        self.pump();
    }

    /// The coordinator's required peers for `epoch` (ignored for another
    /// stream's epoch).
    pub fn coordinator_requires(&mut self, epoch: u64, peers: BTreeSet<String>) {
        self.required = Some((epoch, peers.clone()));
        if self.epoch != Some(epoch) {
            return;
        }
        self.joins.coordinator_requires(peers);
        self.apply_required();
        self.pump();
    }

    /// Group `seq` was written locally; it answers `tickets`.
    pub fn written(&mut self, seq: u64, batches: Vec<Vec<EncodedEntry>>, tickets: &[Ticket]) {
        self.gate.written(seq, tickets);
        self.outbox.push(seq, batches);
        self.pump();
    }

    /// Whether the gate holds as many events as it may: the driver stops
    /// passing journal events until it drains.
    pub fn gate_full(&self) -> bool {
        self.gate.held() >= GATE_HELD_MAX
    }

    /// A journal event, in the order the journal sent it (after the
    /// `written` of its group).
    pub fn journal_event(&mut self, input: Input) {
        self.gate.event(input);
    }

    /// The next journal event the node may have.
    pub fn poll_release(&mut self) -> Option<Input> {
        self.gate.poll()
    }

    pub fn poll_output(&mut self) -> Option<HubOutput> {
        self.out.pop_front()
    }

    /// A part of the snapshot link `token` asked for.
    pub fn snapshot_chunk(&mut self, token: u64, batches: Vec<Vec<EncodedEntry>>) {
        if let Some(link) = self.link_of(token) {
            if link.phase() == Phase::Snapshot {
                link.snapshot_chunk(batches);
            }
        }
        self.pump();
    }

    /// The snapshot for `token` is whole: it holds groups up to `seq`.
    pub fn snapshot_end(&mut self, token: u64, seq: u64) {
        if let Some(link) = self.link_of(token) {
            if link.phase() == Phase::Snapshot {
                link.snapshot_end(seq);
            }
        }
        self.pump();
    }

    /// No journal to snapshot (not active): the link closes.
    pub fn snapshot_none(&mut self, token: u64) {
        let idx = (token >> 32) as usize;
        if let Some(slot) = self.slots.get(idx) {
            warn!(peer = %slot.addr, "no journal to snapshot for the mirror peer (not active); closing its link");
            self.drop_link(idx);
        }
        self.pump();
    }

    /// Peer `idx` is connected on connection `conn`; `false` if passive
    /// (the driver closes the connection).
    pub fn peer_up(&mut self, idx: usize, conn: u64) -> bool {
        let Some(epoch) = self.epoch else {
            return false;
        };
        let slot = &mut self.slots[idx];
        slot.conn = conn;
        slot.link = Some(SourceLink::new(&self.node, epoch));
        self.pump();
        true
    }

    /// Peer `idx`'s connection `conn` closed.
    pub fn peer_down(&mut self, idx: usize, conn: u64, reason: &str) {
        let slot = &self.slots[idx];
        if slot.conn == conn && slot.link.is_some() {
            warn!(peer = %slot.addr, name = ?slot.name, %reason, "mirror link to peer {} down", slot.addr);
            self.drop_link(idx);
        }
        self.pump();
    }

    /// Every connected link sends an empty frame (the peer's idle timer).
    pub fn heartbeat(&mut self) {
        for (idx, slot) in self.slots.iter().enumerate() {
            if slot.link.is_some() {
                self.out.push_back(HubOutput::Send {
                    peer: idx,
                    bytes: Bytes::from_static(&EMPTY_FRAME),
                });
            }
        }
    }

    /// A frame from peer `idx` on connection `conn`.
    pub fn peer_frame(&mut self, idx: usize, conn: u64, frame: MirrorFrame) {
        self.on_frame(idx, conn, frame);
        self.pump();
    }

    /// What `/metrics` shows.
    pub fn figures(&self) -> HubFigures {
        let last = self.outbox.last_seq();
        let unacknowledged = match self.epoch {
            Some(_) => {
                let least = self.slots.iter().map(|s| s.acked).min().unwrap_or(last);
                i64::try_from(last.saturating_sub(least)).unwrap_or(i64::MAX)
            }
            None => -1,
        };
        let streaming = self
            .slots
            .iter()
            .filter(|s| {
                s.link
                    .as_ref()
                    .is_some_and(|l| l.phase() == Phase::Streaming)
            })
            .count();
        HubFigures {
            unacknowledged,
            outbox_groups: self.outbox.groups() as u64,
            outbox_bytes: self.outbox.bytes() as u64,
            peers_streaming: streaming as u64,
            answers_held: self.gate.held() as u64,
        }
    }

    /// The gate waits for the coordinator's peers and those joining
    /// (nobody with asynchronous mirroring).
    fn apply_required(&mut self) {
        let Some(epoch) = self.epoch else { return };
        let peers = if self.sync {
            self.joins.required()
        } else {
            BTreeSet::new()
        };
        self.gate.set_required(epoch, peers);
    }

    /// Peer `idx`'s link ends: its connection closes, and a join not yet
    /// announced ends with it (an announced one stays until the
    /// coordinator's set names it).
    fn drop_link(&mut self, idx: usize) {
        let slot = &mut self.slots[idx];
        slot.link = None;
        self.out.push_back(HubOutput::Close { peer: idx });
        if let Some(n) = slot.name.clone() {
            if self.joins.link_ended(&n) {
                self.apply_required();
            }
        }
    }

    fn on_frame(&mut self, idx: usize, conn: u64, frame: MirrorFrame) {
        let epoch = self.epoch.unwrap_or(0);
        let slot = &mut self.slots[idx];
        if slot.conn != conn {
            return;
        }
        let Some(link) = slot.link.as_mut() else {
            return;
        };
        if let Some(name) = &slot.name {
            self.out
                .push_back(HubOutput::News(HubNews::Heard(name.clone())));
        }
        if let Err(e) = link.on_frame(frame, &self.outbox) {
            warn!(peer = %slot.addr, error = %e, "mirror link to peer {} failed", slot.addr);
            self.drop_link(idx);
            return;
        }
        let events: Vec<LinkEvent> = std::iter::from_fn(|| link.poll_event()).collect();
        for ev in events {
            let slot = &mut self.slots[idx];
            match ev {
                LinkEvent::Named(name) => {
                    info!(peer = %slot.addr, %name, "mirror link to {name} at {} up", slot.addr);
                    self.out
                        .push_back(HubOutput::News(HubNews::Known(name.clone())));
                    self.out
                        .push_back(HubOutput::News(HubNews::Heard(name.clone())));
                    slot.name = Some(name);
                }
                LinkEvent::Preference {
                    peer,
                    prefers_active,
                } => {
                    self.out.push_back(HubOutput::News(HubNews::Preference {
                        peer,
                        prefers_active,
                    }));
                }
                LinkEvent::SnapshotWanted => {
                    info!(peer = %slot.addr, "peer {} is not in this stream: sending it a snapshot of the journal", slot.addr);
                    self.out.push_back(HubOutput::Snapshot {
                        token: ((idx as u64) << 32) | (conn & 0xffff_ffff),
                    });
                }
                LinkEvent::Acked(seq) => {
                    slot.acked = slot.acked.max(seq);
                    let Some(name) = slot.name.clone() else {
                        continue;
                    };
                    self.gate.acked(&name, epoch, seq);
                    if self.joins.acked(&name, seq) {
                        self.announce(name);
                    }
                }
                LinkEvent::CaughtUp => {
                    let Some(name) = slot.name.clone() else {
                        continue;
                    };
                    // Receipts wait for it from now on; the coordinator
                    // hears of it once it has every group written until now.
                    let acked = slot.acked;
                    let announce = self.joins.caught_up(&name, acked, self.outbox.last_seq());
                    self.apply_required();
                    if announce {
                        self.announce(name);
                    }
                }
            }
        }
    }

    /// Peer `name` has every group written when receipts began to wait for
    /// it: the coordinator may list it in sync.
    fn announce(&mut self, name: String) {
        let epoch = self.epoch.unwrap_or(0);
        info!(peer = %name, epoch, "peer {name} caught up with epoch {epoch}'s stream");
        self.out.push_back(HubOutput::News(HubNews::CaughtUp(name)));
    }

    /// Queues what each link has to send; trims the outbox to what every
    /// streaming link has (kept whole while no link streams, up to its
    /// bound, so that a peer that reconnects soon resumes).
    fn pump(&mut self) {
        let mut min_acked: Option<u64> = None;
        let mut behind_links = Vec::new();
        for (idx, slot) in self.slots.iter_mut().enumerate() {
            let Some(link) = slot.link.as_mut() else {
                continue;
            };
            let mut out = BytesMut::new();
            let mut behind = None;
            loop {
                match link.poll_frame(&self.outbox) {
                    Ok(Some(f)) => encode(&f, &mut out),
                    Ok(None) => break,
                    Err(seq) => {
                        behind = Some(seq);
                        break;
                    }
                }
            }
            if link.phase() == Phase::Streaming {
                min_acked = Some(min_acked.map_or(link.acked(), |m| m.min(link.acked())));
            }
            if !out.is_empty() {
                self.out.push_back(HubOutput::Send {
                    peer: idx,
                    bytes: out.freeze(),
                });
            }
            if let Some(seq) = behind {
                warn!(peer = %slot.addr, seq, "peer {} fell behind the mirror outbox (group {seq} gone): reconnecting for a snapshot", slot.addr);
                behind_links.push(idx);
            }
        }
        for idx in behind_links {
            self.drop_link(idx);
        }
        if let Some(m) = min_acked {
            self.outbox.trim_to(m);
        }
    }

    fn link_of(&mut self, token: u64) -> Option<&mut SourceLink> {
        let idx = (token >> 32) as usize;
        let slot = self.slots.get_mut(idx)?;
        if slot.conn & 0xffff_ffff != token & 0xffff_ffff {
            return None;
        }
        slot.link.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::EpochFence;
    use crate::mirror::{MirrorDecoder, TargetAction, TargetLink};
    use crate::node::JournalEvent;

    fn durable(t: u64) -> Input {
        Input::Journal(JournalEvent::Durable { ticket: Ticket(t) })
    }

    fn group(k: &str) -> Vec<Vec<EncodedEntry>> {
        vec![vec![EncodedEntry {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Some(Bytes::from_static(b"v")),
        }]]
    }

    /// A passive peer `b` on the other end of link 0: it applies what
    /// comes at once (its journal is durable at once) and answers.
    struct Peer {
        link: TargetLink,
        fence: EpochFence,
        decoder: MirrorDecoder,
        applied: Vec<TargetAction>,
    }

    impl Peer {
        fn new() -> Peer {
            Peer {
                link: TargetLink::new("b", None),
                fence: EpochFence::new(),
                decoder: MirrorDecoder::new(),
                applied: Vec::new(),
            }
        }
    }

    /// Carries bytes and answers between the hub and the peer until
    /// neither has anything to say; returns the news and snapshot
    /// requests seen on the way.
    fn settle(hub: &mut MirrorHub, peer: &mut Peer) -> Vec<HubOutput> {
        let mut seen = Vec::new();
        loop {
            let mut quiet = true;
            while let Some(out) = hub.poll_output() {
                quiet = false;
                match out {
                    HubOutput::Send { peer: 0, bytes } => peer.decoder.push(&bytes).unwrap(),
                    HubOutput::Snapshot { token } => {
                        seen.push(HubOutput::Snapshot { token });
                        hub.snapshot_chunk(token, group("snap"));
                        hub.snapshot_end(token, hub.outbox.last_seq());
                    }
                    other => seen.push(other),
                }
            }
            while let Some(f) = peer.decoder.next_frame().unwrap() {
                quiet = false;
                peer.link.on_frame(f, &mut peer.fence).unwrap();
            }
            while let Some(a) = peer.link.poll_action() {
                quiet = false;
                match &a {
                    TargetAction::Append { delivery, .. }
                    | TargetAction::SnapshotChunk { delivery, .. }
                    | TargetAction::SnapshotEnd { delivery, .. } => peer.link.durable(*delivery),
                    TargetAction::SnapshotBegin => {}
                }
                peer.applied.push(a);
            }
            while let Some(f) = peer.link.poll_frame() {
                quiet = false;
                hub.peer_frame(0, 1, f);
            }
            if quiet {
                return seen;
            }
        }
    }

    fn active_hub(sync: bool) -> (MirrorHub, Peer) {
        let mut hub = MirrorHub::new("a", sync, &["b:1".to_string()]);
        hub.role(Some(3));
        assert_eq!(hub.poll_output(), Some(HubOutput::Reconnect));
        hub.stream_opened(Some(3));
        assert!(hub.peer_up(0, 1));
        (hub, Peer::new())
    }

    #[test]
    fn a_sync_receipt_waits_for_the_in_sync_peer_and_a_joining_peer_is_announced() {
        let (mut hub, mut peer) = active_hub(true);
        let seen = settle(&mut hub, &mut peer);
        assert!(seen.contains(&HubOutput::News(HubNews::Known("b".into()))));
        assert!(
            seen.contains(&HubOutput::News(HubNews::CaughtUp("b".into()))),
            "a peer that took the (empty) snapshot has caught up: {seen:?}"
        );
        hub.coordinator_requires(3, BTreeSet::from(["b".to_string()]));
        hub.written(1, group("m1"), &[Ticket(7)]);
        hub.journal_event(durable(7));
        assert_eq!(hub.poll_release(), None, "held until b has group 1");
        assert_eq!(hub.figures().answers_held, 1);
        settle(&mut hub, &mut peer);
        assert_eq!(hub.poll_release(), Some(durable(7)));
        assert_eq!(hub.figures().unacknowledged, 0);
        assert!(peer.applied.iter().any(|a| matches!(
            a,
            TargetAction::Append { position, .. } if position.seq == 1 && position.epoch == 3
        )));
    }

    #[test]
    fn without_sync_or_without_required_peers_answers_pass_at_once() {
        let (mut hub, _peer) = active_hub(false);
        hub.coordinator_requires(3, BTreeSet::from(["b".to_string()]));
        hub.written(1, group("m1"), &[Ticket(1)]);
        hub.journal_event(durable(1));
        assert_eq!(hub.poll_release(), Some(durable(1)));
        assert_eq!(hub.figures().unacknowledged, 1, "the window of loss");
    }

    #[test]
    fn a_link_that_goes_down_is_closed_and_a_passive_hub_takes_no_link() {
        let (mut hub, mut peer) = active_hub(true);
        settle(&mut hub, &mut peer);
        hub.peer_down(0, 1, "reset");
        assert_eq!(hub.poll_output(), Some(HubOutput::Close { peer: 0 }));
        hub.peer_down(0, 1, "again");
        assert_eq!(hub.poll_output(), None, "closed once");
        hub.role(None);
        assert_eq!(hub.poll_output(), Some(HubOutput::Reconnect));
        assert!(!hub.peer_up(0, 2));
        assert_eq!(hub.figures().unacknowledged, -1);
    }

    #[test]
    fn a_stepped_down_stream_drops_the_held_answers() {
        let (mut hub, mut peer) = active_hub(true);
        settle(&mut hub, &mut peer);
        hub.coordinator_requires(3, BTreeSet::from(["b".to_string()]));
        hub.written(1, group("m1"), &[Ticket(9)]);
        hub.journal_event(durable(9));
        hub.role(None);
        assert_eq!(hub.poll_release(), None, "never receipted by a passive");
    }
}
