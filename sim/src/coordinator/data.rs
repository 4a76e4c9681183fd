//! One broker's data in the coordinator scenario: its own journal (a model
//! of the local journal: batches, durable once written, kept across
//! crashes with the stream position beside it), core's `MirrorHub` on the
//! active side, core's `TargetLink` for each incoming link on the passive
//! side (the bytes go through the real mirror codec), and the node's part
//! that matters to mirroring: a message stored or consumed is answered only
//! when the sync gate lets its durable answer through.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use halyard_core::coordinator::EpochFence;
use halyard_core::ids::Ticket;
use halyard_core::journal::group_commit::EncodedEntry;
use halyard_core::mirror::{
    encode, HubNews, HubOutput, MirrorDecoder, MirrorFrame, MirrorHub, Position, TargetAction,
    TargetError, TargetLink,
};
use halyard_core::node::{Input, JournalEvent};

use super::wire::{Node, Wire};

/// A link silent this long is closed (both ends send a heartbeat every
/// `HEARTBEAT_MS`).
pub const SILENCE_MS: u64 = 2_000;
const HEARTBEAT_MS: u64 = 250;
/// A dial not answered this long is given up.
const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// A source dials a peer again this long after its link ended.
const RECONNECT_AFTER_MS: u64 = 200;

/// What survives a crash: the journal and the stream position it holds.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub journal: Vec<Vec<EncodedEntry>>,
    pub position: Option<Position>,
    /// The journal folded: key -> value (what the broker's queue holds).
    state: BTreeMap<Bytes, Bytes>,
}

impl Disk {
    fn fold(state: &mut BTreeMap<Bytes, Bytes>, batch: &[EncodedEntry]) {
        for e in batch {
            match &e.value {
                Some(v) => state.insert(e.key.clone(), v.clone()),
                None => state.remove(&e.key),
            };
        }
    }

    fn append(&mut self, batches: Vec<Vec<EncodedEntry>>) {
        for b in batches {
            Disk::fold(&mut self.state, &b);
            self.journal.push(b);
        }
    }

    fn replace(&mut self, journal: Vec<Vec<EncodedEntry>>) {
        self.state.clear();
        for b in &journal {
            Disk::fold(&mut self.state, b);
        }
        self.journal = journal;
    }

    /// The messages the queue holds.
    pub fn messages(&self) -> BTreeSet<u64> {
        self.held().collect()
    }

    /// The messages the queue holds, oldest first: keys are zero-padded, so
    /// the map's order is the numbers' (a consume looks at the first few
    /// instead of collecting them all).
    fn held(&self) -> impl Iterator<Item = u64> + '_ {
        self.state.keys().filter_map(|k| msg_of(k))
    }
}

fn key_of(msg: u64) -> Bytes {
    // Eight digits keep the keys' order the numbers' (`Disk::held`).
    assert!(msg < 100_000_000, "message number {msg} outgrows its key");
    Bytes::from(format!("m{msg:08}"))
}

fn msg_of(key: &[u8]) -> Option<u64> {
    std::str::from_utf8(key.strip_prefix(b"m")?)
        .ok()?
        .parse()
        .ok()
}

/// What the data side did, for its broker to carry out or report.
#[derive(Clone, Debug)]
pub enum DataOut {
    Send(Node, Wire),
    /// For the coordinator (peer heard, caught up).
    News(HubNews),
    /// A source's hello named this epoch.
    EpochSeen(u64),
    /// A group or snapshot of `from`'s stream of `epoch` went into the journal.
    Applied {
        from: usize,
        epoch: u64,
    },
    RefusedStale,
    /// A receipt went to the producer for `msg`.
    Receipted(u64),
    /// A consumer's acknowledgement of `msg` was written.
    Tombstoned(u64),
    /// The consumer's acknowledgement of `msg` was answered.
    Consumed(u64),
    Trace(String),
}

/// A link this broker dials (active).
struct OutConn {
    conn: u64,
    up: bool,
    since: u64,
    heard: u64,
    decoder: MirrorDecoder,
}

/// A link another broker dialed (passive).
struct InLink {
    from: usize,
    link: TargetLink,
    decoder: MirrorDecoder,
    heard: u64,
}

pub struct Data {
    idx: usize,
    name: String,
    /// Its links' welcome asks for failback.
    prefers_active: bool,
    peers: usize,
    pub disk: Disk,
    hub: MirrorHub,
    fence: EpochFence,
    active: Option<u64>,
    /// Groups written in this stream.
    seq: u64,
    next_ticket: u64,
    /// What each durable answer the gate holds answers.
    answers: BTreeMap<Ticket, DataOut>,
    consuming: BTreeSet<u64>,
    out_conns: BTreeMap<usize, OutConn>,
    next_dial: BTreeMap<usize, u64>,
    in_links: BTreeMap<u64, InLink>,
    /// A snapshot being received (lost at a crash, as the folder is).
    snapshot: Option<Vec<Vec<EncodedEntry>>>,
    conn_base: u64,
    conns_made: u64,
    last_heartbeat: u64,
    pub out: Vec<DataOut>,
}

impl Data {
    /// `conn_base` makes this incarnation's connection numbers unique.
    pub fn new(
        idx: usize,
        names: &[String],
        sync: bool,
        disk: Disk,
        conn_base: u64,
        prefers_active: bool,
    ) -> Data {
        let addrs: Vec<String> = (0..names.len())
            .map(|p| {
                if p == idx {
                    String::new()
                } else {
                    names[p].clone()
                }
            })
            .collect();
        Data {
            idx,
            name: names[idx].clone(),
            prefers_active,
            peers: names.len(),
            disk,
            hub: MirrorHub::new(&names[idx], sync, &addrs),
            fence: EpochFence::new(),
            active: None,
            seq: 0,
            next_ticket: 0,
            answers: BTreeMap::new(),
            consuming: BTreeSet::new(),
            out_conns: BTreeMap::new(),
            next_dial: BTreeMap::new(),
            in_links: BTreeMap::new(),
            snapshot: None,
            conn_base,
            conns_made: 0,
            last_heartbeat: 0,
            out: Vec::new(),
        }
    }

    #[cfg(feature = "planted-bugs")]
    pub fn plant(&mut self, bug: halyard_core::coordinator::PlantedBug) {
        use halyard_core::coordinator::PlantedBug;
        match bug {
            PlantedBug::ApplyOldEpochEvents => self.fence.plant_admit_stale(),
            PlantedBug::ReceiptBeforePeerAck => self.hub.plant(bug),
            PlantedBug::TakeOverOutOfSync => {}
        }
    }

    fn trace(&mut self, what: String) {
        self.out.push(DataOut::Trace(what));
    }

    fn send(&mut self, to: usize, wire: Wire) {
        self.out.push(DataOut::Send(Node::Broker(to), wire));
    }

    /// The node goes active under `epoch`: it owns the journal, its own
    /// writes leave the stream, and a new stream starts.
    pub fn go_active(&mut self, now: u64, epoch: u64) {
        for (conn, l) in std::mem::take(&mut self.in_links) {
            self.send(l.from, Wire::Down { conn });
        }
        self.snapshot = None;
        self.disk.position = None;
        self.fence.observe(epoch);
        self.active = Some(epoch);
        self.hub.role(Some(epoch));
        self.hub.stream_opened(Some(epoch));
        self.seq = 0;
        self.answers.clear();
        self.consuming.clear();
        self.carry_out(now);
    }

    /// The node stepped down: no answer still held goes out.
    pub fn go_passive(&mut self, now: u64) {
        self.active = None;
        self.hub.role(None);
        self.answers.clear();
        self.consuming.clear();
        self.carry_out(now);
    }

    pub fn required(&mut self, now: u64, epoch: u64, peers: BTreeSet<String>) {
        self.hub.coordinator_requires(epoch, peers);
        self.carry_out(now);
    }

    fn new_conn(&mut self) -> u64 {
        self.conns_made += 1;
        self.conn_base + self.conns_made
    }

    fn close_out(&mut self, now: u64, peer: usize, reason: &str) {
        if let Some(c) = self.out_conns.remove(&peer) {
            self.send(peer, Wire::Down { conn: c.conn });
            self.next_dial.insert(peer, now + RECONNECT_AFTER_MS);
            if c.up {
                self.hub.peer_down(peer, c.conn, reason);
            }
        }
    }

    /// Carries out the hub's outputs and passes the answers it released.
    fn carry_out(&mut self, now: u64) {
        while let Some(o) = self.hub.poll_output() {
            match o {
                HubOutput::Send { peer, bytes } => {
                    if let Some(c) = self.out_conns.get(&peer).filter(|c| c.up) {
                        let conn = c.conn;
                        self.send(peer, Wire::Bytes { conn, bytes });
                    }
                }
                HubOutput::Close { peer } => {
                    if let Some(c) = self.out_conns.remove(&peer) {
                        self.send(peer, Wire::Down { conn: c.conn });
                        self.next_dial.insert(peer, now + RECONNECT_AFTER_MS);
                    }
                }
                HubOutput::Reconnect => {
                    for (peer, c) in std::mem::take(&mut self.out_conns) {
                        self.send(peer, Wire::Down { conn: c.conn });
                    }
                }
                HubOutput::Snapshot { token } => {
                    if self.active.is_some() {
                        self.trace(format!(
                            "snapshot of {} batches for a peer",
                            self.disk.journal.len()
                        ));
                        if !self.disk.journal.is_empty() {
                            self.hub.snapshot_chunk(token, self.disk.journal.clone());
                        }
                        self.hub.snapshot_end(token, self.seq);
                    } else {
                        self.hub.snapshot_none(token);
                    }
                }
                HubOutput::News(n) => self.out.push(DataOut::News(n)),
            }
        }
        while let Some(input) = self.hub.poll_release() {
            if let Input::Journal(JournalEvent::Durable { ticket }) = input {
                if let Some(answer) = self.answers.remove(&ticket) {
                    if let DataOut::Consumed(m) = answer {
                        self.consuming.remove(&m);
                    }
                    self.out.push(answer);
                }
            }
        }
    }

    /// Writes one group (durable at once) and hands it to the stream; the
    /// answer waits in the gate.
    fn write(&mut self, now: u64, entry: EncodedEntry, answer: DataOut) {
        let batch = vec![entry];
        self.disk.append(vec![batch.clone()]);
        self.seq += 1;
        self.next_ticket += 1;
        let ticket = Ticket(self.next_ticket);
        self.answers.insert(ticket, answer);
        self.hub.written(self.seq, vec![batch], &[ticket]);
        self.hub
            .journal_event(Input::Journal(JournalEvent::Durable { ticket }));
        self.carry_out(now);
    }

    /// The clock: heartbeats, silent links, dialing the peers.
    pub fn tick(&mut self, now: u64) {
        if now.saturating_sub(self.last_heartbeat) >= HEARTBEAT_MS {
            self.last_heartbeat = now;
            self.hub.heartbeat();
            let mut beat = BytesMut::new();
            encode(&MirrorFrame::Heartbeat, &mut beat);
            let beat = beat.freeze();
            // Only on links whose hello was answered: the welcome's
            // protocol header comes first.
            let links: Vec<(u64, usize)> = self
                .in_links
                .iter()
                .filter(|(_, l)| l.link.epoch().is_some())
                .map(|(c, l)| (*c, l.from))
                .collect();
            for (conn, from) in links {
                self.send(
                    from,
                    Wire::Bytes {
                        conn,
                        bytes: beat.clone(),
                    },
                );
            }
        }
        let silent: Vec<u64> = self
            .in_links
            .iter()
            .filter(|(_, l)| now.saturating_sub(l.heard) > SILENCE_MS)
            .map(|(c, _)| *c)
            .collect();
        for conn in silent {
            if let Some(l) = self.in_links.remove(&conn) {
                self.trace(format!("mirror stream from s{} silent: closed", l.from));
                self.send(l.from, Wire::Down { conn });
            }
        }
        let stale: Vec<(usize, &'static str)> = self
            .out_conns
            .iter()
            .filter_map(|(p, c)| {
                if !c.up && now.saturating_sub(c.since) > CONNECT_TIMEOUT_MS {
                    Some((*p, "connect timed out"))
                } else if c.up && now.saturating_sub(c.heard) > SILENCE_MS {
                    Some((*p, "silent"))
                } else {
                    None
                }
            })
            .collect();
        for (peer, why) in stale {
            self.trace(format!("mirror link to s{peer}: {why}"));
            self.close_out(now, peer, why);
        }
        if self.active.is_some() {
            let me = self.idx;
            for peer in (0..self.peers).filter(|p| *p != me) {
                let due = self.next_dial.get(&peer).is_none_or(|t| now >= *t);
                if due && !self.out_conns.contains_key(&peer) {
                    let conn = self.new_conn();
                    self.out_conns.insert(
                        peer,
                        OutConn {
                            conn,
                            up: false,
                            since: now,
                            heard: now,
                            decoder: MirrorDecoder::new(),
                        },
                    );
                    self.send(peer, Wire::Dial { conn });
                }
            }
        }
        self.carry_out(now);
    }

    /// A message for this broker's data side; `newest` is the newest epoch
    /// its coordinator knows (the target's fence learns it first).
    pub fn receive(&mut self, now: u64, from: usize, wire: Wire, newest: u64) {
        match wire {
            Wire::Dial { conn } => {
                if self.active.is_some() {
                    self.send(from, Wire::Down { conn });
                    return;
                }
                let link = TargetLink::new(&self.name, self.disk.position)
                    .prefers_active(self.prefers_active);
                self.in_links.insert(
                    conn,
                    InLink {
                        from,
                        link,
                        decoder: MirrorDecoder::new(),
                        heard: now,
                    },
                );
                self.send(from, Wire::Accepted { conn });
            }
            Wire::Accepted { conn } => {
                let Some(c) = self.out_conns.get_mut(&from).filter(|c| c.conn == conn) else {
                    self.send(from, Wire::Down { conn });
                    return;
                };
                c.up = true;
                c.heard = now;
                if !self.hub.peer_up(from, conn) {
                    self.close_out(now, from, "passive");
                }
            }
            Wire::Bytes { conn, bytes } => {
                if self.in_links.contains_key(&conn) {
                    self.target_bytes(now, conn, &bytes, newest);
                } else {
                    self.source_bytes(now, from, conn, &bytes);
                }
            }
            Wire::Down { conn } => {
                if self.in_links.remove(&conn).is_some() {
                    self.trace(format!("mirror stream from s{from} closed"));
                } else if self.out_conns.get(&from).is_some_and(|c| c.conn == conn) {
                    let c = self.out_conns.remove(&from).expect("checked");
                    self.next_dial.insert(from, now + RECONNECT_AFTER_MS);
                    if c.up {
                        self.hub.peer_down(from, conn, "closed by the peer");
                    }
                }
            }
            Wire::Store { msg } => {
                if let Some(epoch) = self.active {
                    let entry = EncodedEntry {
                        key: key_of(msg),
                        value: Some(Bytes::from(format!("epoch {epoch}"))),
                    };
                    self.write(now, entry, DataOut::Receipted(msg));
                }
            }
            Wire::Consume => {
                if self.active.is_none() {
                    return;
                }
                let oldest = self.disk.held().find(|m| !self.consuming.contains(m));
                if let Some(msg) = oldest {
                    self.consuming.insert(msg);
                    self.out.push(DataOut::Tombstoned(msg));
                    let entry = EncodedEntry {
                        key: key_of(msg),
                        value: None,
                    };
                    self.write(now, entry, DataOut::Consumed(msg));
                }
            }
            other => unreachable!("not for the data side: {other:?}"),
        }
        self.carry_out(now);
    }

    fn source_bytes(&mut self, now: u64, from: usize, conn: u64, bytes: &[u8]) {
        let Some(c) = self
            .out_conns
            .get_mut(&from)
            .filter(|c| c.conn == conn && c.up)
        else {
            return;
        };
        c.heard = now;
        let mut frames = Vec::new();
        let mut failed = c.decoder.push(bytes).err().map(|e| e.to_string());
        while failed.is_none() {
            match c.decoder.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => failed = Some(e.to_string()),
            }
        }
        for f in frames {
            self.hub.peer_frame(from, conn, f);
        }
        if let Some(e) = failed {
            self.close_out(now, from, &e);
        }
    }

    fn target_bytes(&mut self, now: u64, conn: u64, bytes: &[u8], newest: u64) {
        self.fence.observe(newest);
        let l = self.in_links.get_mut(&conn).expect("checked by the caller");
        l.heard = now;
        let from = l.from;
        let mut frames = Vec::new();
        let mut failed = l.decoder.push(bytes).err().map(|e| e.to_string());
        while failed.is_none() {
            match l.decoder.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => failed = Some(e.to_string()),
            }
        }
        for f in frames {
            if let MirrorFrame::Hello { epoch, .. } = &f {
                self.out.push(DataOut::EpochSeen(*epoch));
            }
            let l = self.in_links.get_mut(&conn).expect("not removed yet");
            if let Err(e) = l.link.on_frame(f, &mut self.fence) {
                if matches!(e, TargetError::StaleEpoch(_)) {
                    self.out.push(DataOut::RefusedStale);
                }
                failed = Some(e.to_string());
                break;
            }
            self.apply(conn);
        }
        let l = self.in_links.get_mut(&conn).expect("not removed yet");
        let mut out = BytesMut::new();
        while let Some(f) = l.link.poll_frame() {
            encode(&f, &mut out);
        }
        if !out.is_empty() {
            let bytes = out.freeze();
            self.send(from, Wire::Bytes { conn, bytes });
        }
        if let Some(e) = failed {
            self.trace(format!("mirror stream from s{from} refused: {e}"));
            self.in_links.remove(&conn);
            self.send(from, Wire::Down { conn });
        }
    }

    /// Carries out the link's actions, durably, and acknowledges them.
    fn apply(&mut self, conn: u64) {
        let l = self.in_links.get_mut(&conn).expect("checked by the caller");
        let (from, epoch) = (l.from, l.link.epoch().unwrap_or(0));
        while let Some(action) = l.link.poll_action() {
            match action {
                TargetAction::Append {
                    delivery,
                    batches,
                    position,
                } => {
                    self.disk.append(batches);
                    self.disk.position = Some(position);
                    l.link.durable(delivery);
                    self.out.push(DataOut::Applied { from, epoch });
                }
                TargetAction::SnapshotBegin => {
                    self.disk.position = None;
                    self.snapshot = Some(Vec::new());
                }
                TargetAction::SnapshotChunk { delivery, batches } => {
                    if let Some(s) = self.snapshot.as_mut() {
                        s.extend(batches);
                    }
                    l.link.durable(delivery);
                }
                TargetAction::SnapshotEnd { delivery, position } => {
                    let journal = self.snapshot.take().unwrap_or_default();
                    self.out.push(DataOut::Trace(format!(
                        "snapshot of {} batches from s{from} in place (epoch {}, group {})",
                        journal.len(),
                        position.epoch,
                        position.seq
                    )));
                    self.disk.replace(journal);
                    self.disk.position = Some(position);
                    l.link.durable(delivery);
                    self.out.push(DataOut::Applied { from, epoch });
                }
            }
        }
    }
}
