//! The source side of mirroring: one task owns the stream's outbox, the
//! sync gate and one `SourceLink` per configured peer; the journal thread
//! (through the tap), the peers' sockets (`net.rs`) and the lock
//! coordinator (role, required peers) report here, and the node hears the
//! journal's events through the gate.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use halyard_core::ids::Ticket;
use halyard_core::journal::group_commit::EncodedEntry;
use halyard_core::mirror::gate::GATE_HELD_MAX;
use halyard_core::mirror::{
    encode, Joins, LinkEvent, MirrorFrame, Outbox, Phase, SourceLink, SyncGate,
};
use halyard_core::node::{Input, JournalEvent, JournalRequest};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::coordinator::{PeerNews, Role};
use crate::journal::JournalHandle;
use crate::metrics::JournalMetrics;

/// `Loaded` inputs let wait in the node's channel at once (as
/// `crate::journal::send_loaded` does without mirroring).
const LOADED_QUEUED_MAX: usize = 4;
/// How often a link that carries nothing sends a heartbeat.
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);

/// What reports to the hub.
pub(crate) enum HubMsg {
    StreamOpened,
    Written {
        seq: u64,
        batches: Vec<Vec<EncodedEntry>>,
        tickets: Vec<Ticket>,
    },
    SnapshotChunk {
        token: u64,
        batches: Vec<Vec<EncodedEntry>>,
    },
    SnapshotEnd {
        token: u64,
        seq: u64,
    },
    SnapshotNone {
        token: u64,
    },
    PeerUp {
        idx: usize,
        conn: u64,
        writer: mpsc::UnboundedSender<Bytes>,
    },
    PeerFrame {
        idx: usize,
        conn: u64,
        frame: MirrorFrame,
    },
    PeerDown {
        idx: usize,
        conn: u64,
        reason: String,
    },
}

/// One configured peer.
struct Slot {
    addr: String,
    /// Newest group of this stream the peer acknowledged (kept across
    /// its reconnections; 0 at a new stream).
    acked: u64,
    conn: u64,
    link: Option<SourceLink>,
    writer: Option<mpsc::UnboundedSender<Bytes>>,
    name: Option<String>,
}

pub(crate) struct Hub {
    pub node: String,
    pub sync: bool,
    pub node_inputs: mpsc::Sender<Input>,
    pub journal: JournalHandle,
    pub queued: Arc<AtomicUsize>,
    pub news: mpsc::UnboundedSender<PeerNews>,
    pub role: watch::Receiver<Role>,
    pub required: watch::Receiver<Option<(u64, BTreeSet<String>)>>,
    /// Peers' addresses; `PeerUp` names them by index.
    pub peers: Vec<String>,
    /// Tells the connectors to drop their connections (a new stream).
    pub reconnect: watch::Sender<u64>,
    pub metrics: Arc<JournalMetrics>,
}

struct State {
    epoch: Option<u64>,
    outbox: Outbox,
    gate: SyncGate,
    slots: Vec<Slot>,
    /// Who receipts wait for: the coordinator's peers and those joining
    /// (`halyard_core::mirror::join`).
    joins: Joins,
}

impl Hub {
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<HubMsg>,
        mut gate_rx: mpsc::Receiver<Input>,
    ) {
        let mut st = State {
            epoch: None,
            outbox: Outbox::new(0),
            gate: SyncGate::new(),
            joins: Joins::default(),
            slots: self
                .peers
                .iter()
                .map(|addr| Slot {
                    addr: addr.clone(),
                    acked: 0,
                    conn: 0,
                    link: None,
                    writer: None,
                    name: None,
                })
                .collect(),
        };
        let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            // Biased: a group's `Written` is sent before the journal's
            // answers for it, and must be taken first.
            tokio::select! {
                biased;
                msg = rx.recv() => match msg {
                    Some(m) => self.on_msg(&mut st, m),
                    None => return,
                },
                // A full gate (peers slow to acknowledge) stops taking the
                // journal's answers: the journal thread then waits on its
                // bounded channel, and appends with it.
                input = gate_rx.recv(), if st.gate.held() < GATE_HELD_MAX => match input {
                    Some(i) => st.gate.event(i),
                    None => return,
                },
                changed = self.role.changed() => {
                    if changed.is_err() { return; }
                    let role = *self.role.borrow_and_update();
                    self.on_role(&mut st, role);
                }
                changed = self.required.changed() => {
                    if changed.is_err() { return; }
                    let required = self.required.borrow_and_update().clone();
                    if let Some((epoch, peers)) = required {
                        self.on_coord_required(&mut st, epoch, peers);
                    }
                }
                _ = heartbeat.tick() => {
                    for slot in &st.slots {
                        if let (Some(w), Some(_)) = (&slot.writer, &slot.link) {
                            let beat = Bytes::from_static(&halyard_core::protocol::amqp::EMPTY_FRAME);
                            queue_bytes(&self.queued, w, beat);
                        }
                    }
                }
            }
            self.pump(&mut st);
            if !self.forward(&mut st).await {
                return;
            }
            self.report(&st);
        }
    }

    /// Passes the gate's released events to the node.
    async fn forward(&self, st: &mut State) -> bool {
        while let Some(input) = st.gate.poll() {
            if matches!(input, Input::Journal(JournalEvent::Loaded { .. })) {
                let tx = &self.node_inputs;
                while tx.max_capacity() - tx.capacity() > LOADED_QUEUED_MAX && !tx.is_closed() {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
            if self.node_inputs.send(input).await.is_err() {
                return false;
            }
        }
        true
    }

    /// The coordinator's required peers for `epoch` (ignored for another
    /// stream's epoch).
    fn on_coord_required(&self, st: &mut State, epoch: u64, peers: BTreeSet<String>) {
        if st.epoch != Some(epoch) {
            return;
        }
        st.joins.coordinator_requires(peers);
        self.apply_required(st);
    }

    /// The gate waits for the coordinator's peers and those joining
    /// (nobody with asynchronous mirroring).
    fn apply_required(&self, st: &mut State) {
        let Some(epoch) = st.epoch else { return };
        let peers = if self.sync {
            st.joins.required()
        } else {
            BTreeSet::new()
        };
        st.gate.set_required(epoch, peers);
    }

    /// A link of peer `name` ended: a join not yet announced ends with it
    /// (an announced one stays until the coordinator's set names it).
    fn forget_join(&self, st: &mut State, name: Option<String>) {
        if let Some(n) = name {
            if st.joins.link_ended(&n) {
                self.apply_required(st);
            }
        }
    }

    /// The figures `/metrics` shows (`JournalMetrics::mirror_*`).
    fn report(&self, st: &State) {
        let m = &self.metrics;
        let last = st.outbox.last_seq();
        let unacked = match st.epoch {
            Some(_) => {
                let least = st.slots.iter().map(|s| s.acked).min().unwrap_or(last);
                i64::try_from(last.saturating_sub(least)).unwrap_or(i64::MAX)
            }
            None => -1,
        };
        m.mirror_unacknowledged_groups
            .store(unacked, Ordering::Relaxed);
        m.mirror_outbox_groups
            .store(st.outbox.groups() as u64, Ordering::Relaxed);
        m.mirror_outbox_bytes
            .store(st.outbox.bytes() as u64, Ordering::Relaxed);
        let streaming = st
            .slots
            .iter()
            .filter(|s| {
                s.link
                    .as_ref()
                    .is_some_and(|l| l.phase() == Phase::Streaming)
            })
            .count();
        m.mirror_peers_streaming
            .store(streaming as u64, Ordering::Relaxed);
        m.mirror_answers_held
            .store(st.gate.held() as u64, Ordering::Relaxed);
    }

    fn on_role(&mut self, st: &mut State, role: Role) {
        match role {
            Role::Active { epoch } => {
                info!(
                    epoch,
                    peers = st.slots.len(),
                    "mirroring this broker's journal to its peers under epoch {epoch}"
                );
                // The stream itself starts when the node opens the journal
                // (`StreamOpened`): resetting the outbox or the gate here,
                // seen on another channel, could come after its first
                // groups and forget them.
                st.epoch = Some(epoch);
            }
            Role::Passive => {
                info!("mirror stream ended: this broker is passive");
                st.epoch = None;
                st.gate.end_stream();
                st.joins.clear();
            }
        }
        for slot in &mut st.slots {
            slot.link = None;
            slot.writer = None;
            slot.acked = 0;
        }
        self.reconnect.send_modify(|n| *n += 1);
    }

    fn on_msg(&mut self, st: &mut State, msg: HubMsg) {
        match msg {
            HubMsg::StreamOpened => {
                // The node opened the journal: the stream starts here, in
                // the channel's order, before its first group (the role
                // change may be seen later: it comes on another channel).
                let epoch = match *self.role.borrow() {
                    Role::Active { epoch } => epoch,
                    Role::Passive => st.epoch.unwrap_or(0),
                };
                st.epoch = Some(epoch);
                st.outbox = Outbox::new(epoch);
                st.gate.start_stream(epoch);
                st.joins.clear();
                if let Some((e, peers)) = self.required.borrow().clone() {
                    self.on_coord_required(st, e, peers);
                }
                for slot in &mut st.slots {
                    slot.acked = 0;
                    // A link opened before this point knows another outbox.
                    if slot.link.is_some() {
                        slot.link = None;
                        slot.writer = None;
                    }
                }
            }
            HubMsg::Written {
                seq,
                batches,
                tickets,
            } => {
                st.gate.written(seq, &tickets);
                st.outbox.push(seq, batches);
            }
            HubMsg::SnapshotChunk { token, batches } => {
                if let Some(link) = link_of(st, token) {
                    if link.phase() == Phase::Snapshot {
                        link.snapshot_chunk(batches);
                    }
                }
            }
            HubMsg::SnapshotEnd { token, seq } => {
                if let Some(link) = link_of(st, token) {
                    if link.phase() == Phase::Snapshot {
                        link.snapshot_end(seq);
                    }
                }
            }
            HubMsg::SnapshotNone { token } => {
                let idx = (token >> 32) as usize;
                if let Some(slot) = st.slots.get_mut(idx) {
                    warn!(peer = %slot.addr, "no journal to snapshot for the mirror peer (not active); closing its link");
                    slot.link = None;
                    slot.writer = None;
                    let name = slot.name.clone();
                    self.forget_join(st, name);
                }
            }
            HubMsg::PeerUp { idx, conn, writer } => {
                let Some(epoch) = st.epoch else { return };
                let slot = &mut st.slots[idx];
                slot.conn = conn;
                slot.link = Some(SourceLink::new(&self.node, epoch));
                slot.writer = Some(writer);
            }
            HubMsg::PeerFrame { idx, conn, frame } => self.on_frame(st, idx, conn, frame),
            HubMsg::PeerDown { idx, conn, reason } => {
                let slot = &mut st.slots[idx];
                if slot.conn == conn && slot.link.is_some() {
                    warn!(peer = %slot.addr, name = ?slot.name, %reason, "mirror link to peer {} down", slot.addr);
                    slot.link = None;
                    slot.writer = None;
                    let name = slot.name.clone();
                    self.forget_join(st, name);
                }
            }
        }
    }

    fn on_frame(&mut self, st: &mut State, idx: usize, conn: u64, frame: MirrorFrame) {
        let epoch = st.epoch.unwrap_or(0);
        let slot = &mut st.slots[idx];
        if slot.conn != conn {
            return;
        }
        let Some(link) = slot.link.as_mut() else {
            return;
        };
        if let Some(name) = &slot.name {
            let _ = self.news.send(PeerNews::Heard { peer: name.clone() });
        }
        if let Err(e) = link.on_frame(frame, &st.outbox) {
            warn!(peer = %slot.addr, error = %e, "mirror link to peer {} failed", slot.addr);
            slot.link = None;
            slot.writer = None;
            let name = slot.name.clone();
            self.forget_join(st, name);
            return;
        }
        let events: Vec<LinkEvent> = std::iter::from_fn(|| link.poll_event()).collect();
        for ev in events {
            let slot = &mut st.slots[idx];
            match ev {
                LinkEvent::Named(name) => {
                    info!(peer = %slot.addr, %name, "mirror link to {name} at {} up", slot.addr);
                    let _ = self.news.send(PeerNews::Known { peer: name.clone() });
                    let _ = self.news.send(PeerNews::Heard { peer: name.clone() });
                    slot.name = Some(name);
                }
                LinkEvent::Preference {
                    peer,
                    prefers_active,
                } => {
                    let _ = self.news.send(PeerNews::Preference {
                        peer,
                        prefers_active,
                    });
                }
                LinkEvent::SnapshotWanted => {
                    self.metrics
                        .mirror_snapshots
                        .fetch_add(1, Ordering::Relaxed);
                    info!(peer = %slot.addr, "peer {} is not in this stream: sending it a snapshot of the journal", slot.addr);
                    self.journal.send(JournalRequest::Snapshot {
                        token: ((idx as u64) << 32) | (conn & 0xffff_ffff),
                    });
                }
                LinkEvent::Acked(seq) => {
                    slot.acked = slot.acked.max(seq);
                    let Some(name) = slot.name.clone() else {
                        continue;
                    };
                    st.gate.acked(&name, epoch, seq);
                    if st.joins.acked(&name, seq) {
                        self.announce(st, name);
                    }
                }
                LinkEvent::CaughtUp => {
                    let Some(name) = slot.name.clone() else {
                        continue;
                    };
                    // Receipts wait for it from now on; the coordinator
                    // hears of it once it has every group written until now.
                    let announce = st.joins.caught_up(&name, slot.acked, st.outbox.last_seq());
                    self.apply_required(st);
                    if announce {
                        self.announce(st, name);
                    }
                }
            }
        }
    }

    /// Peer `name` has every group written when receipts began to wait for
    /// it: the coordinator may list it in sync.
    fn announce(&self, st: &State, name: String) {
        let epoch = st.epoch.unwrap_or(0);
        info!(peer = %name, epoch, "peer {name} caught up with epoch {epoch}'s stream");
        let _ = self.news.send(PeerNews::CaughtUp { peer: name });
    }

    /// Sends what each link has to send; trims the outbox to what every
    /// streaming link has (kept whole while no link streams, up to its
    /// bound, so that a peer that reconnects soon resumes).
    fn pump(&self, st: &mut State) {
        let mut min_acked: Option<u64> = None;
        let mut dropped = Vec::new();
        for slot in &mut st.slots {
            let Some(link) = slot.link.as_mut() else {
                continue;
            };
            let mut out = BytesMut::new();
            let mut behind = None;
            loop {
                match link.poll_frame(&st.outbox) {
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
            if let Some(w) = slot.writer.as_ref() {
                if !out.is_empty() {
                    queue_bytes(&self.queued, w, out.freeze());
                }
            }
            if let Some(seq) = behind {
                warn!(peer = %slot.addr, seq, "peer {} fell behind the mirror outbox (group {seq} gone): reconnecting for a snapshot", slot.addr);
                slot.link = None;
                slot.writer = None;
                dropped.push(slot.name.clone());
            }
        }
        for name in dropped {
            self.forget_join(st, name);
        }
        if let Some(m) = min_acked {
            st.outbox.trim_to(m);
        }
    }
}

/// Hands `bytes` to a link's writer, counted in `queued` (the writer
/// counts them down once written or dropped). Every byte a writer gets
/// must come through here: a byte counted down but never up would wrap
/// the count and hold a snapshot back for ever.
fn queue_bytes(queued: &AtomicUsize, writer: &mpsc::UnboundedSender<Bytes>, bytes: Bytes) {
    let n = bytes.len();
    queued.fetch_add(n, Ordering::Relaxed);
    if writer.send(bytes).is_err() {
        written(queued, n);
    }
}

/// `n` queued bytes were written (or dropped with their link).
pub(crate) fn written(queued: &AtomicUsize, n: usize) {
    let r = queued.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
        Some(q.saturating_sub(n))
    });
    debug_assert!(
        r.is_ok_and(|q| q >= n),
        "mirror writer counted down bytes never queued"
    );
}

fn link_of(st: &mut State, token: u64) -> Option<&mut SourceLink> {
    let idx = (token >> 32) as usize;
    let slot = st.slots.get_mut(idx)?;
    if slot.conn & 0xffff_ffff != token & 0xffff_ffff {
        return None;
    }
    slot.link.as_mut()
}
