//! An in-memory driver for a [`Node`]: a journal that is a `Vec`, a lock
//! that is always granted, and clients that are frame queues. Used by unit
//! tests, property tests and benches; it does no I/O.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::ids::{ConnId, Ticket};
use crate::journal::{decode_entry, encode_entry, Entry};
use crate::node::{
    AcceptRequest, AdminError, AdminReply, ConnEvent, ConnRequest, Event, Input, JournalEvent,
    JournalRequest, LockEvent, LockRequest, Node, NodeConfig, Output,
};
use crate::protocol::stomp::{encode_to_bytes, Command, Decoded, Decoder, Frame, Limits, Version};
use crate::Millis;

/// Drives one node in memory.
pub struct Harness {
    pub node: Node,
    pub now: Millis,
    /// Durable batches, in order.
    pub journal: Vec<Vec<Entry>>,
    /// Appended, not yet durable.
    pub in_flight: VecDeque<(Ticket, Vec<Entry>, Vec<crate::bridge::OutRecord>)>,
    /// Kafka bridge records of durable batches, in order.
    pub published: Vec<crate::bridge::OutRecord>,
    /// What the node asked of the Kafka bridge's reader.
    pub bridge: Vec<crate::bridge::BridgeRequest>,
    /// Keep appends in flight until [`Harness::complete`] is called.
    pub hold_journal: bool,
    clients: BTreeMap<ConnId, Decoder>,
    received: BTreeMap<ConnId, VecDeque<Frame>>,
    pub closed: BTreeSet<ConnId>,
    pub events: Vec<Event>,
    pub accepting: bool,
    pub paused: BTreeSet<ConnId>,
    /// Bytes the node sent to connections opened with [`Harness::open_raw`]
    /// (another protocol's clients decode them themselves).
    pub raw: BTreeMap<ConnId, Vec<u8>>,
    /// Answers to `Input::Admin`, in the order they came.
    pub admin: Vec<(u64, Result<AdminReply, AdminError>)>,
}

impl Harness {
    /// A node started on an empty journal, live.
    pub fn new(config: NodeConfig) -> Harness {
        Harness::with_journal(config, Vec::new())
    }

    /// A node started on an existing journal (a restart), live.
    pub fn with_journal(config: NodeConfig, journal: Vec<Vec<Entry>>) -> Harness {
        let mut h = Harness {
            node: Node::new(config),
            now: 0,
            journal,
            in_flight: VecDeque::new(),
            published: Vec::new(),
            bridge: Vec::new(),
            hold_journal: false,
            clients: BTreeMap::new(),
            received: BTreeMap::new(),
            closed: BTreeSet::new(),
            events: Vec::new(),
            accepting: false,
            paused: BTreeSet::new(),
            raw: BTreeMap::new(),
            admin: Vec::new(),
        };
        h.input(Input::Start);
        assert!(
            h.node.is_live(),
            "node did not become live: {:?}",
            h.node.state()
        );
        h
    }

    pub fn input(&mut self, input: Input) {
        self.node.handle(self.now, input);
        self.pump();
    }

    /// Moves virtual time forward, ticking at every deadline on the way.
    pub fn advance(&mut self, ms: Millis) {
        let end = self.now + ms;
        while let Some(d) = self.node.next_deadline() {
            if d > end {
                break;
            }
            self.now = self.now.max(d);
            self.input(Input::Tick);
        }
        self.now = end;
        self.input(Input::Tick);
    }

    /// Carries out every pending output.
    pub fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(out) = self.node.poll_output() {
                progressed = true;
                match out {
                    Output::Conn(ConnRequest::Send { conn, bytes }) => {
                        let n = bytes.len();
                        let bytes = bytes.joined();
                        if let Some(r) = self.raw.get_mut(&conn) {
                            r.extend_from_slice(&bytes);
                        } else if let Some(d) = self.clients.get_mut(&conn) {
                            d.push(&bytes).expect("server frames decode");
                            while let Some(x) = d.next().expect("server frames decode") {
                                if let Decoded::Frame(f) = x {
                                    self.received.entry(conn).or_default().push_back(f);
                                }
                            }
                        }
                        self.node
                            .handle(self.now, Input::Conn(ConnEvent::Flushed { conn, bytes: n }));
                    }
                    Output::Conn(ConnRequest::Close { conn }) => {
                        self.closed.insert(conn);
                    }
                    Output::Conn(ConnRequest::PauseReading { conn }) => {
                        self.paused.insert(conn);
                    }
                    Output::Conn(ConnRequest::ResumeReading { conn }) => {
                        self.paused.remove(&conn);
                    }
                    Output::Conn(ConnRequest::CheckPassword {
                        conn,
                        hash,
                        password,
                    }) => {
                        let ok = crate::security::password::verify(&hash, &password.0);
                        self.node.handle(
                            self.now,
                            Input::Conn(ConnEvent::PasswordChecked { conn, ok }),
                        );
                    }
                    Output::Journal(JournalRequest::Append {
                        ticket,
                        entries,
                        publish,
                    }) => {
                        // Through the codec, as a real journal would.
                        let entries = entries
                            .iter()
                            .map(|e| {
                                let (k, v) = encode_entry(e);
                                decode_entry(&k, v.as_deref()).expect("journal entry round trip")
                            })
                            .collect();
                        self.in_flight.push_back((ticket, entries, publish));
                    }
                    Output::Journal(JournalRequest::Open) => {
                        let entries: Vec<Entry> = self.journal.iter().flatten().cloned().collect();
                        self.node
                            .handle(self.now, Input::Journal(JournalEvent::Loaded { entries }));
                        self.node
                            .handle(self.now, Input::Journal(JournalEvent::Ready));
                    }
                    Output::Journal(JournalRequest::Read { ids }) => {
                        // The latest entry of each message's key, as the
                        // local journal's index finds it.
                        let found = ids
                            .iter()
                            .filter_map(|id| {
                                let key = crate::journal::Key::Message(*id);
                                let latest = self
                                    .journal
                                    .iter()
                                    .flatten()
                                    .rev()
                                    .find(|e| e.key() == key)?;
                                match latest {
                                    Entry::Put(crate::journal::Record::MessageStored {
                                        message,
                                        ..
                                    }) => Some((*id, message.clone())),
                                    _ => None,
                                }
                            })
                            .collect();
                        self.node.handle(
                            self.now,
                            Input::Journal(JournalEvent::Read {
                                asked: ids,
                                found,
                                error: None,
                            }),
                        );
                    }
                    Output::Lock(LockRequest::Acquire) => {
                        self.node.handle(self.now, Input::Lock(LockEvent::Acquired));
                    }
                    Output::Accept(AcceptRequest::Start) => self.accepting = true,
                    Output::Accept(AcceptRequest::Stop) => self.accepting = false,
                    Output::Event(e) => self.events.push(e),
                    Output::Admin { id, result } => self.admin.push((id, result)),
                    Output::Bridge(r) => self.bridge.push(r),
                    Output::Journal(JournalRequest::Close | JournalRequest::Snapshot { .. })
                    | Output::Lock(LockRequest::Release)
                    | Output::Stopped => {}
                }
            }
            if !self.hold_journal && !self.in_flight.is_empty() {
                self.complete(usize::MAX);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
    }

    /// Makes up to `n` in-flight batches durable, in order.
    pub fn complete(&mut self, n: usize) {
        for _ in 0..n {
            let Some((ticket, entries, publish)) = self.in_flight.pop_front() else {
                break;
            };
            self.journal.push(entries);
            self.published.extend(publish);
            self.node
                .handle(self.now, Input::Journal(JournalEvent::Durable { ticket }));
        }
        self.pump();
    }

    /// Messages in `queue` (the node's stats), or `None` if it has none.
    pub fn queue_depth(&self, queue: &str) -> Option<u64> {
        self.node
            .stats(100)
            .queues
            .iter()
            .find(|q| q.name == queue)
            .map(|q| q.messages)
    }

    /// Makes up to `n` in-flight batches durable, in order, and answers
    /// them in one `Input::Journals`, as a driver does for a group commit.
    pub fn complete_together(&mut self, n: usize) {
        let mut answers = Vec::new();
        while answers.len() < n {
            let Some((ticket, entries, publish)) = self.in_flight.pop_front() else {
                break;
            };
            self.journal.push(entries);
            self.published.extend(publish);
            answers.push(JournalEvent::Durable { ticket });
        }
        if !answers.is_empty() {
            self.node.handle(self.now, Input::Journals(answers));
        }
        self.pump();
    }

    /// Opens a connection and sends CONNECT (STOMP 1.2).
    pub fn connect(&mut self, conn: u64) -> ConnId {
        self.connect_with(conn, &[])
    }

    pub fn connect_with(&mut self, conn: u64, headers: &[(&str, &str)]) -> ConnId {
        let id = self.open(conn);
        let mut f = Frame::new(Command::Connect)
            .with_header("accept-version", "1.2")
            .with_header("host", "localhost");
        for (k, v) in headers {
            f.push_header(*k, *v);
        }
        self.send(id, f);
        let connected = self.take(id);
        assert!(
            connected.iter().any(|f| f.command == Command::Connected),
            "no CONNECTED: {connected:?}"
        );
        id
    }

    /// Opens a connection whose bytes the test decodes itself.
    pub fn open_raw(&mut self, conn: u64) -> ConnId {
        let id = ConnId(conn);
        self.raw.insert(id, Vec::new());
        self.input(Input::Conn(ConnEvent::Opened { conn: id }));
        id
    }

    /// Opens a connection that has sent nothing yet (what the server
    /// sends it is decoded as STOMP 1.2 frames).
    pub fn open(&mut self, conn: u64) -> ConnId {
        let id = ConnId(conn);
        let mut d = Decoder::new(Limits::default());
        d.set_version(Version::V1_2);
        self.clients.insert(id, d);
        self.input(Input::Conn(ConnEvent::Opened { conn: id }));
        id
    }

    /// What the node sent to a raw connection since the last call.
    pub fn take_raw(&mut self, conn: ConnId) -> Vec<u8> {
        self.raw
            .get_mut(&conn)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Sends raw bytes from a client.
    pub fn send_raw(&mut self, conn: ConnId, bytes: &[u8]) {
        self.input(Input::Conn(ConnEvent::Received {
            conn,
            bytes: Bytes::copy_from_slice(bytes),
        }));
    }

    pub fn send(&mut self, conn: ConnId, frame: Frame) {
        let bytes = encode_to_bytes(&frame, Version::V1_2);
        self.input(Input::Conn(ConnEvent::Received { conn, bytes }));
    }

    /// Frames the client has received and not yet taken.
    pub fn take(&mut self, conn: ConnId) -> Vec<Frame> {
        self.received
            .get_mut(&conn)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    pub fn close(&mut self, conn: ConnId) {
        self.clients.remove(&conn);
        self.input(Input::Conn(ConnEvent::Closed { conn }));
    }

    /// A fresh node restarted on the first `batches` durable batches.
    pub fn restart_on_prefix(&self, batches: usize) -> Harness {
        let prefix = self.journal[..batches.min(self.journal.len())].to_vec();
        Harness::with_journal(self.node.config().clone(), prefix)
    }

    /// A fresh node restarted on the whole durable journal.
    pub fn restart(&self) -> Harness {
        self.restart_on_prefix(self.journal.len())
    }
}

/// Frame builders for tests.
pub mod frames {
    use super::*;

    pub fn send(dest: &str, body: &str) -> Frame {
        Frame::new(Command::Send)
            .with_header("destination", dest)
            .with_body(Bytes::copy_from_slice(body.as_bytes()))
    }

    pub fn send_receipt(dest: &str, body: &str, receipt: &str) -> Frame {
        send(dest, body).with_header("receipt", receipt)
    }

    pub fn subscribe(id: &str, dest: &str, ack: &str) -> Frame {
        Frame::new(Command::Subscribe)
            .with_header("id", id)
            .with_header("destination", dest)
            .with_header("ack", ack)
    }

    pub fn ack(id: &str) -> Frame {
        Frame::new(Command::Ack).with_header("id", id)
    }

    pub fn nack(id: &str) -> Frame {
        Frame::new(Command::Nack).with_header("id", id)
    }

    pub fn body(f: &Frame) -> String {
        String::from_utf8_lossy(&f.body).into_owned()
    }

    /// The `receipt-id`s of the RECEIPT frames among `frames`, in order
    /// (a RECEIPT without one fails the test).
    pub fn receipts(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .filter(|f| f.command == Command::Receipt)
            .map(|f| {
                f.header("receipt-id")
                    .expect("a RECEIPT names its receipt-id")
                    .to_string()
            })
            .collect()
    }
}
