//! The source side of mirroring on Tokio: one task runs core's
//! `MirrorHub` (the stream's outbox, the sync gate, one `SourceLink` per
//! configured peer); the journal thread (through the tap), the peers'
//! sockets (`net.rs`) and the lock coordinator (role, required peers)
//! report here, and the node hears the journal's events through the gate.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use halyard_core::ids::Ticket;
use halyard_core::journal::group_commit::EncodedEntry;
use halyard_core::mirror::{HubNews, HubOutput, MirrorFrame, MirrorHub};
use halyard_core::node::{Input, JournalEvent, JournalRequest};
use tokio::sync::{mpsc, watch};
use tracing::warn;

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

impl Hub {
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<HubMsg>,
        mut gate_rx: mpsc::Receiver<Input>,
    ) {
        let mut hub = MirrorHub::new(&self.node, self.sync, &self.peers);
        // Each peer's connection writer, while its link is up.
        let mut writers: Vec<Option<mpsc::UnboundedSender<Bytes>>> = vec![None; self.peers.len()];
        let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
        let mut beats: u64 = 0;
        loop {
            // Biased: a group's `Written` is sent before the journal's
            // answers for it, and must be taken first.
            tokio::select! {
                biased;
                msg = rx.recv() => match msg {
                    Some(m) => self.on_msg(&mut hub, &mut writers, m),
                    None => return,
                },
                // A full gate (peers slow to acknowledge) stops taking the
                // journal's answers: the journal thread then waits on its
                // bounded channel, and appends with it.
                input = gate_rx.recv(), if !hub.gate_full() => match input {
                    Some(i) => hub.journal_event(i),
                    None => return,
                },
                changed = self.role.changed() => {
                    if changed.is_err() { return; }
                    let role = *self.role.borrow_and_update();
                    hub.role(match role {
                        Role::Active { epoch } => Some(epoch),
                        Role::Passive => None,
                    });
                }
                changed = self.required.changed() => {
                    if changed.is_err() { return; }
                    let required = self.required.borrow_and_update().clone();
                    if let Some((epoch, peers)) = required {
                        hub.coordinator_requires(epoch, peers);
                    }
                }
                _ = heartbeat.tick() => {
                    hub.heartbeat();
                    beats += 1;
                    if beats.is_multiple_of(BEATS_PER_DEPTH_LOG) {
                        log_depth(&hub, self.peers.len());
                    }
                }
            }
            self.carry_out(&mut hub, &mut writers);
            if !self.forward(&mut hub).await {
                return;
            }
            self.report(&hub);
        }
    }

    /// Carries out the hub's outputs.
    fn carry_out(&self, hub: &mut MirrorHub, writers: &mut [Option<mpsc::UnboundedSender<Bytes>>]) {
        while let Some(out) = hub.poll_output() {
            match out {
                HubOutput::Send { peer, bytes } => {
                    if let Some(w) = &writers[peer] {
                        queue_bytes(&self.queued, w, bytes);
                    }
                }
                HubOutput::Close { peer } => writers[peer] = None,
                HubOutput::Reconnect => {
                    writers.iter_mut().for_each(|w| *w = None);
                    self.reconnect.send_modify(|n| *n += 1);
                }
                HubOutput::Snapshot { token } => {
                    self.metrics
                        .mirror_snapshots
                        .fetch_add(1, Ordering::Relaxed);
                    self.journal.send(JournalRequest::Snapshot { token });
                }
                HubOutput::News(news) => {
                    let _ = self.news.send(match news {
                        HubNews::Known(peer) => PeerNews::Known { peer },
                        HubNews::Heard(peer) => PeerNews::Heard { peer },
                        HubNews::CaughtUp(peer) => PeerNews::CaughtUp { peer },
                        HubNews::Preference {
                            peer,
                            prefers_active,
                        } => PeerNews::Preference {
                            peer,
                            prefers_active,
                        },
                    });
                }
            }
        }
    }

    /// Passes the gate's released events to the node.
    async fn forward(&self, hub: &mut MirrorHub) -> bool {
        while let Some(input) = hub.poll_release() {
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

    /// The figures `/metrics` shows (`JournalMetrics::mirror_*`).
    fn report(&self, hub: &MirrorHub) {
        let m = &self.metrics;
        let f = hub.figures();
        m.mirror_unacknowledged_groups
            .store(f.unacknowledged, Ordering::Relaxed);
        m.mirror_outbox_groups
            .store(f.outbox_groups, Ordering::Relaxed);
        m.mirror_outbox_bytes
            .store(f.outbox_bytes, Ordering::Relaxed);
        m.mirror_peers_streaming
            .store(f.peers_streaming, Ordering::Relaxed);
        m.mirror_answers_held
            .store(f.answers_held, Ordering::Relaxed);
    }

    fn on_msg(
        &self,
        hub: &mut MirrorHub,
        writers: &mut [Option<mpsc::UnboundedSender<Bytes>>],
        msg: HubMsg,
    ) {
        match msg {
            HubMsg::StreamOpened => {
                // The node opened the journal: the stream starts here, in
                // the channel's order, before its first group (the role
                // change may be seen later: it comes on another channel).
                let epoch = match *self.role.borrow() {
                    Role::Active { epoch } => Some(epoch),
                    Role::Passive => None,
                };
                if let Some((e, peers)) = self.required.borrow().clone() {
                    hub.coordinator_requires(e, peers);
                }
                hub.stream_opened(epoch);
            }
            HubMsg::Written {
                seq,
                batches,
                tickets,
            } => hub.written(seq, batches, &tickets),
            HubMsg::SnapshotChunk { token, batches } => hub.snapshot_chunk(token, batches),
            HubMsg::SnapshotEnd { token, seq } => hub.snapshot_end(token, seq),
            HubMsg::SnapshotNone { token } => hub.snapshot_none(token),
            HubMsg::PeerUp { idx, conn, writer } => {
                if hub.peer_up(idx, conn) {
                    writers[idx] = Some(writer);
                }
            }
            HubMsg::PeerFrame { idx, conn, frame } => hub.peer_frame(idx, conn, frame),
            HubMsg::PeerDown { idx, conn, reason } => hub.peer_down(idx, conn, &reason),
        }
    }
}

/// Heartbeats between two logs of what waits for an absent peer (10 s).
const BEATS_PER_DEPTH_LOG: u64 = 40;

/// While a peer is not streaming, how much of the stream waits for it
/// (the outbox, then the journal: a snapshot once the outbox no longer
/// reaches back far enough).
fn log_depth(hub: &MirrorHub, peers: usize) {
    let f = hub.figures();
    if f.unacknowledged > 0 && (f.peers_streaming as usize) < peers {
        warn!(
            groups = f.unacknowledged,
            outbox_bytes = f.outbox_bytes,
            streaming = f.peers_streaming,
            peers,
            "mirror: {} groups wait for a peer that is away ({} of {peers} peers streaming; {} bytes in the outbox, the rest in the journal)",
            f.unacknowledged,
            f.peers_streaming,
            f.outbox_bytes
        );
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
