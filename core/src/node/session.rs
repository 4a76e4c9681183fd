//! STOMP sessions: one [`Conn`] per client connection and the handling of
//! each client frame.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::debug;

use super::pipeline::{VolatileSend, Work};
use super::{ConnRequest, Event, Node, NodeConfig, Output};
use crate::broker::{AckMode, Destination, RefKey};
use crate::ha::HaState;
use crate::ids::ConnId;
use crate::journal::{DurableSub, Entry, Key, QueueKind, Record, Routing, StoredMessage};
use crate::protocol::stomp::{Command, Decoded, Decoder, Frame, Version, HEARTBEAT};
use crate::Millis;

/// Headers that steer the broker and are not stored with the message.
const CONTROL_HEADERS: &[&str] = &[
    "destination",
    "destination-type",
    "receipt",
    "transaction",
    "content-length",
    "persistent",
    "message-id",
    "subscription",
    "ack",
    "redelivered",
    "delivery-count",
];

/// Artemis's duplicate-detection header, honoured as is.
pub const DUPLICATE_ID_HEADER: &str = "_AMQ_DUPL_ID";

/// A send held by an open transaction until COMMIT.
pub(crate) struct TxSend {
    dest: Destination,
    persistent: bool,
    dup_id: Option<String>,
    message: StoredMessage,
}

#[derive(Default)]
pub(crate) struct Tx {
    sends: Vec<TxSend>,
    acks: Vec<RefKey>,
    bytes: usize,
}

impl Tx {
    fn frames(&self) -> usize {
        self.sends.len() + self.acks.len()
    }
}

/// One client connection.
pub(crate) struct Conn {
    decoder: Decoder,
    pub version: Version,
    connected: bool,
    /// DISCONNECT seen: no more frames are read.
    closing: bool,
    client_id: Option<String>,
    hb_send_ms: u64,
    hb_recv_ms: u64,
    opened_at: Millis,
    last_recv: Millis,
    pub last_send: Millis,
    txs: BTreeMap<String, Tx>,
    /// An ERROR is waiting for its turn in the pipeline.
    error_queued: bool,
    /// Pipeline entries of this connection not yet completed.
    pub inflight: usize,
    paused: bool,
}

impl Conn {
    /// When this connection next needs attention (connect timeout, heart-beats).
    pub fn deadline(&self, config: &NodeConfig) -> Option<Millis> {
        if !self.connected {
            return Some(self.opened_at + config.connect_timeout_ms);
        }
        let mut d = None;
        if self.hb_send_ms > 0 {
            d = Some(self.last_send + self.hb_send_ms);
        }
        if self.hb_recv_ms > 0 {
            let t = self.last_recv + 2 * self.hb_recv_ms;
            d = Some(d.map_or(t, |x: Millis| x.min(t)));
        }
        d
    }
}

/// What a SUBSCRIBE attaches to once its turn comes.
pub(crate) enum SubTarget {
    Queue(String),
    NonDurable(String),
}

pub(crate) struct SubscribeReq {
    sub_id: String,
    target: SubTarget,
    ack: AckMode,
    window: Option<usize>,
    destination: String,
}

/// A frame could not be served; the connection gets ERROR and is closed.
struct Refused {
    message: String,
    detail: String,
}

impl Refused {
    fn new(message: impl Into<String>) -> Refused {
        Refused {
            message: message.into(),
            detail: String::new(),
        }
    }
}

impl<E: std::error::Error> From<E> for Refused {
    fn from(e: E) -> Refused {
        Refused::new(e.to_string())
    }
}

impl Node {
    pub(super) fn on_opened(&mut self, conn: ConnId) {
        let c = Conn {
            decoder: Decoder::new(self.config.limits.clone()),
            version: Version::V1_0,
            connected: false,
            closing: false,
            client_id: None,
            hb_send_ms: 0,
            hb_recv_ms: 0,
            opened_at: self.now,
            last_recv: self.now,
            last_send: self.now,
            txs: BTreeMap::new(),
            error_queued: false,
            inflight: 0,
            paused: false,
        };
        self.conns.insert(conn, c);
        if self.state != HaState::Live {
            self.protocol_error(conn, "this node is not live", "", None);
        }
    }

    pub(super) fn on_received(&mut self, conn: ConnId, bytes: &[u8]) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_recv = now;
        if let Err(e) = c.decoder.push(bytes) {
            self.protocol_error(conn, &e.to_string(), "", None);
            return;
        }
        self.process_frames(conn);
    }

    pub(super) fn on_closed(&mut self, conn: ConnId) {
        if self.conns.contains_key(&conn) {
            self.forget_conn(conn);
        }
    }

    fn process_frames(&mut self, conn: ConnId) {
        let max = self.config.conn_inflight_max;
        loop {
            if self.state != HaState::Live {
                return;
            }
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.closing || c.paused {
                return;
            }
            if c.inflight >= max {
                c.paused = true;
                self.outputs
                    .push_back(Output::Conn(ConnRequest::PauseReading { conn }));
                return;
            }
            match c.decoder.next() {
                Ok(None) => return,
                Ok(Some(Decoded::HeartBeat)) => {}
                Ok(Some(Decoded::Frame(f))) => {
                    let receipt = f.header("receipt").map(str::to_owned);
                    if let Err(r) = self.handle_frame(conn, f) {
                        self.protocol_error(conn, &r.message, &r.detail, receipt.as_deref());
                        return;
                    }
                }
                Err(e) => {
                    self.protocol_error(conn, &e.to_string(), "", None);
                    return;
                }
            }
        }
    }

    /// Lets paused connections read again once their work has drained.
    pub(super) fn resume_readers(&mut self) {
        let low = self.config.conn_inflight_max / 2;
        let ready: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.paused && c.inflight <= low)
            .map(|(id, _)| *id)
            .collect();
        for conn in ready {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.paused = false;
            }
            self.outputs
                .push_back(Output::Conn(ConnRequest::ResumeReading { conn }));
            self.process_frames(conn);
        }
    }

    /// Sends ERROR (with `receipt-id` if the frame asked for a receipt) and closes.
    pub(super) fn protocol_error(
        &mut self,
        conn: ConnId,
        message: &str,
        detail: &str,
        receipt: Option<&str>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.closing && c.error_queued {
            return;
        }
        // Read nothing more; answer what came before the bad frame first
        // (its receipts are owed), then ERROR and close.
        c.closing = true;
        c.error_queued = true;
        let mut f = Frame::error(message, detail);
        if let Some(r) = receipt {
            f.push_header("receipt-id", r);
        }
        self.event(Event::ClientError {
            conn,
            message: message.to_string(),
        });
        self.submit(Vec::new(), Work::Error { conn, frame: f });
    }

    pub(super) fn close_conn(&mut self, conn: ConnId) {
        if self.conns.contains_key(&conn) {
            self.outputs
                .push_back(Output::Conn(ConnRequest::Close { conn }));
            self.forget_conn(conn);
        }
    }

    /// Returns everything the connection held: open transactions are rolled
    /// back, unacknowledged messages go back to their queues.
    fn forget_conn(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let mut back: Vec<RefKey> = Vec::new();
        for (_, tx) in c.txs {
            back.extend(tx.acks);
        }
        let mut dead = self.broker.requeue(&back);
        dead.extend(self.broker.connection_closed(conn));
        self.dead_letter_now(conn, dead, None);
    }

    /// Journals the dead-lettering of settling references (if any).
    fn dead_letter_now(&mut self, conn: ConnId, dead: Vec<RefKey>, receipt: Option<String>) {
        if dead.is_empty() && receipt.is_none() {
            return;
        }
        let (entries, moves) = self.dead_letter(&dead);
        self.submit(
            entries,
            Work::Frame {
                conn,
                receipt,
                sends: Vec::new(),
                drops: Vec::new(),
                moves,
                dups: Vec::new(),
            },
        );
    }

    fn handle_frame(&mut self, conn: ConnId, f: Frame) -> Result<(), Refused> {
        let connected = self.conns.get(&conn).is_some_and(|c| c.connected);
        debug!(%conn, command = f.command.as_str(), "frame");
        match (connected, f.command) {
            (false, Command::Connect | Command::Stomp) => self.on_connect(conn, &f),
            (false, other) => Err(Refused::new(format!(
                "expected CONNECT or STOMP, got {}",
                other.as_str()
            ))),
            (true, Command::Connect | Command::Stomp) => Err(Refused::new("already connected")),
            (true, Command::Send) => self.on_send(conn, f),
            (true, Command::Subscribe) => self.on_subscribe(conn, &f),
            (true, Command::Unsubscribe) => self.on_unsubscribe(conn, &f),
            (true, Command::Ack) => self.on_ack(conn, &f, true),
            (true, Command::Nack) => self.on_ack(conn, &f, false),
            (true, Command::Begin) => self.on_begin(conn, &f),
            (true, Command::Commit) => self.on_commit(conn, &f),
            (true, Command::Abort) => self.on_abort(conn, &f),
            (true, Command::Disconnect) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.closing = true;
                }
                let receipt = f.header("receipt").map(str::to_owned);
                self.submit(Vec::new(), Work::Disconnect { conn, receipt });
                Ok(())
            }
            (true, other) => Err(Refused::new(format!(
                "{} is a server frame; clients may not send it",
                other.as_str()
            ))),
        }
    }

    fn on_connect(&mut self, conn: ConnId, f: &Frame) -> Result<(), Refused> {
        let version = Version::negotiate(f.header("accept-version")).ok_or_else(|| Refused {
            message: "supported protocol versions are 1.0,1.1,1.2".into(),
            detail: format!(
                "client offered accept-version {:?}",
                f.header("accept-version").unwrap_or("")
            ),
        })?;
        let (cx, cy) = match f.header("heart-beat") {
            None => (0, 0),
            Some(h) => parse_heartbeat(h)
                .ok_or_else(|| Refused::new(format!("invalid heart-beat header {h:?}")))?,
        };
        let hb = self.config.heartbeat_ms;
        let hb_send_ms = if hb == 0 || cy == 0 { 0 } else { hb.max(cy) };
        let hb_recv_ms = if hb == 0 || cx == 0 { 0 } else { hb.max(cx) };
        let client_id = f.header("client-id").map(str::to_owned);
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        c.version = version;
        c.decoder.set_version(version);
        c.connected = true;
        c.client_id = client_id;
        c.hb_send_ms = hb_send_ms;
        c.hb_recv_ms = hb_recv_ms;
        let reply = Frame::new(Command::Connected)
            .with_header("version", version.as_str())
            .with_header("server", concat!("halyard/", env!("CARGO_PKG_VERSION")))
            .with_header("session", conn.to_string())
            .with_header("heart-beat", format!("{hb},{hb}"));
        self.send_frame(conn, &reply);
        Ok(())
    }

    fn resolve(&self, f: &Frame) -> Result<Destination, Refused> {
        Ok(self.config.destinations.resolve(
            f.header("destination"),
            f.header("destination-type"),
            |a| self.broker.address_routing(a),
        )?)
    }

    fn on_send(&mut self, conn: ConnId, f: Frame) -> Result<(), Refused> {
        let dest = self.resolve(&f)?;
        let persistent = match f.header("persistent") {
            None => true,
            Some(p) if p.eq_ignore_ascii_case("true") => true,
            Some(p) if p.eq_ignore_ascii_case("false") => false,
            Some(p) => return Err(Refused::new(format!("invalid persistent header {p:?}"))),
        };
        let dup_id = f.header(DUPLICATE_ID_HEADER).map(str::to_owned);
        let receipt = f.header("receipt").map(str::to_owned);
        let tx = f.header("transaction").map(str::to_owned);
        let mut headers: Vec<(String, String)> = Vec::new();
        for (k, v) in &f.headers {
            // First occurrence wins, as for every STOMP header.
            if !CONTROL_HEADERS.contains(&k.as_str()) && !headers.iter().any(|(h, _)| h == k) {
                headers.push((k.clone(), v.clone()));
            }
        }
        let message = StoredMessage {
            address: dest.address.clone(),
            routing: dest.routing,
            headers,
            body: f.body,
        };
        if let Some(tx) = tx {
            let (frames_max, bytes_max) = (
                self.config.transaction_frames_max,
                self.config.transaction_bytes_max,
            );
            let c = self
                .conns
                .get_mut(&conn)
                .ok_or_else(|| Refused::new("gone"))?;
            let t = c
                .txs
                .get_mut(&tx)
                .ok_or_else(|| Refused::new(format!("unknown transaction {tx:?}")))?;
            if t.frames() >= frames_max || t.bytes + message.body.len() > bytes_max {
                return Err(Refused::new(format!(
                    "transaction {tx:?} exceeds {frames_max} frames or {bytes_max} bytes"
                )));
            }
            t.bytes += message.body.len();
            t.sends.push(TxSend {
                dest,
                persistent,
                dup_id,
                message,
            });
            self.submit(Vec::new(), Work::receipt_only(conn, receipt));
            return Ok(());
        }
        let mut entries = Vec::new();
        let mut sends = Vec::new();
        let mut dups = Vec::new();
        self.plan_one_send(
            dest,
            persistent,
            dup_id,
            message,
            &mut entries,
            &mut sends,
            &mut dups,
        )?;
        self.submit(
            entries,
            Work::Frame {
                conn,
                receipt,
                sends,
                drops: Vec::new(),
                moves: Vec::new(),
                dups,
            },
        );
        Ok(())
    }

    /// Adds one send's journal entries and in-memory work.
    #[allow(clippy::too_many_arguments)]
    fn plan_one_send(
        &mut self,
        dest: Destination,
        persistent: bool,
        dup_id: Option<String>,
        message: StoredMessage,
        entries: &mut Vec<Entry>,
        sends: &mut Vec<VolatileSend>,
        dups: &mut Vec<(String, String)>,
    ) -> Result<(), Refused> {
        if let Some(d) = &dup_id {
            let key = (dest.address.clone(), d.clone());
            if self.broker.duplicate(&dest.address, d).is_some()
                || self.planned_dups.contains(&key)
                || dups.contains(&key)
            {
                // Stored before: receipt it again, store nothing.
                return Ok(());
            }
        }
        let plan = self.broker.plan_send(&dest, persistent, &mut self.ids)?;
        let id = self.ids.next_id();
        entries.extend(
            plan.creates
                .into_iter()
                .map(|d| Entry::Put(Record::QueueCreated(d))),
        );
        if let Some(d) = dup_id {
            entries.push(Entry::Put(Record::DuplicateId {
                address: dest.address.clone(),
                dup_id: d.clone(),
                message: id,
            }));
            let key = (dest.address.clone(), d);
            self.planned_dups.insert(key.clone());
            dups.push(key);
        }
        let message = Arc::new(message);
        if !plan.durable_queues.is_empty() {
            entries.push(Entry::Put(Record::MessageStored {
                id,
                queues: plan.durable_queues,
                message: message.clone(),
            }));
        }
        sends.push(VolatileSend {
            id,
            message,
            queues: plan.volatile_queues,
        });
        Ok(())
    }

    fn on_subscribe(&mut self, conn: ConnId, f: &Frame) -> Result<(), Refused> {
        let version = self.conns.get(&conn).map_or(Version::V1_2, |c| c.version);
        let dest = self.resolve(f)?;
        let destination = f.header("destination").unwrap_or_default().to_string();
        let sub_id = match f.header("id") {
            Some(id) => id.to_string(),
            None if version == Version::V1_0 => destination.clone(),
            None => return Err(Refused::new("SUBSCRIBE needs an id header")),
        };
        let ack = AckMode::parse(f.header("ack")).ok_or_else(|| {
            Refused::new(format!(
                "invalid ack mode {:?} (auto, client or client-individual)",
                f.header("ack").unwrap_or("")
            ))
        })?;
        let window = match f.header("consumer-window-size") {
            None => self.config.broker.consumer_window_bytes_default,
            Some(w) => w
                .parse::<i64>()
                .ok()
                .filter(|w| *w >= -1)
                .ok_or_else(|| Refused::new(format!("invalid consumer-window-size {w:?}")))?,
        };
        let window = usize::try_from(window).ok();
        if self.broker.has_subscription(conn, &sub_id) {
            return Err(Refused::new(format!(
                "subscription id {sub_id:?} is already in use on this connection"
            )));
        }
        let receipt = f.header("receipt").map(str::to_owned);
        let durable_name = f
            .header("durable-subscription-name")
            .or_else(|| f.header("activemq.subscriptionName"));
        let mut entries = Vec::new();
        let target = match (dest.routing, durable_name) {
            (Routing::Anycast, _) => {
                let (_, create) = self.broker.plan_queue(
                    &dest.address,
                    &dest.address,
                    QueueKind::Anycast,
                    &mut self.ids,
                );
                entries.extend(create.map(|d| Entry::Put(Record::QueueCreated(d))));
                SubTarget::Queue(dest.address.clone())
            }
            (Routing::Multicast, None) => SubTarget::NonDurable(dest.address.clone()),
            (Routing::Multicast, Some(name)) => {
                let client_id = self
                    .conns
                    .get(&conn)
                    .and_then(|c| c.client_id.clone())
                    .ok_or_else(|| {
                        Refused::new("a durable subscription needs a client-id header on CONNECT")
                    })?;
                let qname = format!("{client_id}.{name}");
                if self
                    .broker
                    .durable_subscription(&qname, &dest.address)?
                    .is_none()
                {
                    let kind = QueueKind::DurableSubscription(DurableSub {
                        client_id,
                        name: name.to_string(),
                    });
                    let (_, create) =
                        self.broker
                            .plan_queue(&qname, &dest.address, kind, &mut self.ids);
                    entries.extend(create.map(|d| Entry::Put(Record::QueueCreated(d))));
                }
                SubTarget::Queue(qname)
            }
        };
        let req = SubscribeReq {
            sub_id,
            target,
            ack,
            window,
            destination,
        };
        self.submit(entries, Work::Subscribe { conn, receipt, req });
        Ok(())
    }

    /// Attaches a subscription whose turn in the pipeline has come.
    pub(super) fn attach(&mut self, conn: ConnId, req: &SubscribeReq) -> Result<(), String> {
        let queue = match &req.target {
            SubTarget::Queue(name) => self
                .broker
                .queue_by_name(name)
                .map(|q| q.id)
                .ok_or_else(|| format!("queue {name:?} does not exist"))?,
            SubTarget::NonDurable(address) => {
                let id = self.ids.next_id();
                self.broker.create_connection_queue(conn, address, id)
            }
        };
        self.broker
            .subscribe(
                conn,
                &req.sub_id,
                queue,
                req.ack,
                req.window,
                req.destination.clone(),
            )
            .map_err(|e| e.to_string())
    }

    fn on_unsubscribe(&mut self, conn: ConnId, f: &Frame) -> Result<(), Refused> {
        let version = self.conns.get(&conn).map_or(Version::V1_2, |c| c.version);
        let sub_id = match (f.header("id"), version) {
            (Some(id), _) => id.to_string(),
            (None, Version::V1_0) => f
                .header("destination")
                .ok_or_else(|| Refused::new("UNSUBSCRIBE needs an id or destination header"))?
                .to_string(),
            (None, _) => return Err(Refused::new("UNSUBSCRIBE needs an id header")),
        };
        let receipt = f.header("receipt").map(str::to_owned);
        let durable_name = f
            .header("durable-subscription-name")
            .or_else(|| f.header("activemq.subscriptionName"));
        let returned = self.broker.unsubscribe(conn, &sub_id);
        let mut entries = Vec::new();
        if let Some(name) = durable_name {
            let client_id = self
                .conns
                .get(&conn)
                .and_then(|c| c.client_id.clone())
                .ok_or_else(|| Refused::new("removing a durable subscription needs a client-id"))?;
            let qname = format!("{client_id}.{name}");
            if self.broker.queue_by_name(&qname).is_some() {
                entries.push(Entry::Tombstone(Key::Queue(qname)));
            }
        } else if returned.is_none() {
            return Err(Refused::new(format!("no subscription with id {sub_id:?}")));
        }
        let (dl_entries, moves) = self.dead_letter(&returned.unwrap_or_default());
        entries.extend(dl_entries);
        self.submit(
            entries,
            Work::Frame {
                conn,
                receipt,
                sends: Vec::new(),
                drops: Vec::new(),
                moves,
                dups: Vec::new(),
            },
        );
        Ok(())
    }

    fn on_ack(&mut self, conn: ConnId, f: &Frame, positive: bool) -> Result<(), Refused> {
        let ack_id = match f.header("id") {
            Some(id) => id.to_string(),
            None => {
                // STOMP 1.0/1.1 clients acknowledge by message-id (and subscription).
                let mid = f
                    .header("message-id")
                    .ok_or_else(|| Refused::new("ACK/NACK needs an id header"))?;
                let parsed = mid
                    .parse()
                    .map_err(|_| Refused::new(format!("unknown message-id {mid:?}")))?;
                self.broker
                    .ack_for_message(conn, f.header("subscription"), parsed)
                    .ok_or_else(|| Refused::new(format!("unknown message-id {mid:?}")))?
                    .to_string()
            }
        };
        let receipt = f.header("receipt").map(str::to_owned);
        if let Some(tx) = f.header("transaction").filter(|_| positive) {
            let frames_max = self.config.transaction_frames_max;
            let exists = self
                .conns
                .get(&conn)
                .and_then(|c| c.txs.get(tx))
                .map(Tx::frames);
            match exists {
                None => return Err(Refused::new(format!("unknown transaction {tx:?}"))),
                Some(n) if n >= frames_max => {
                    return Err(Refused::new(format!(
                        "transaction {tx:?} exceeds {frames_max} frames"
                    )))
                }
                Some(_) => {}
            }
            let keys = self.broker.settle(conn, &ack_id)?;
            if let Some(t) = self.conns.get_mut(&conn).and_then(|c| c.txs.get_mut(tx)) {
                t.acks.extend(keys);
            }
            self.submit(Vec::new(), Work::receipt_only(conn, receipt));
            return Ok(());
        }
        let keys = self.broker.settle(conn, &ack_id)?;
        if positive {
            let entries = self.broker.settle_entries(&keys);
            let drops = keys.into_iter().filter(|k| !k.durable).collect();
            self.submit(
                entries,
                Work::Frame {
                    conn,
                    receipt,
                    sends: Vec::new(),
                    drops,
                    moves: Vec::new(),
                    dups: Vec::new(),
                },
            );
        } else {
            let dead = self.broker.requeue(&keys);
            let (entries, moves) = self.dead_letter(&dead);
            self.submit(
                entries,
                Work::Frame {
                    conn,
                    receipt,
                    sends: Vec::new(),
                    drops: Vec::new(),
                    moves,
                    dups: Vec::new(),
                },
            );
        }
        Ok(())
    }

    fn tx_name(f: &Frame) -> Result<String, Refused> {
        f.header("transaction").map(str::to_owned).ok_or_else(|| {
            Refused::new(format!("{} needs a transaction header", f.command.as_str()))
        })
    }

    fn on_begin(&mut self, conn: ConnId, f: &Frame) -> Result<(), Refused> {
        let tx = Self::tx_name(f)?;
        let max = self.config.transactions_per_conn_max;
        let c = self
            .conns
            .get_mut(&conn)
            .ok_or_else(|| Refused::new("gone"))?;
        if c.txs.contains_key(&tx) {
            return Err(Refused::new(format!("transaction {tx:?} is already open")));
        }
        if c.txs.len() >= max {
            return Err(Refused::new(format!("more than {max} open transactions")));
        }
        c.txs.insert(tx, Tx::default());
        let receipt = f.header("receipt").map(str::to_owned);
        self.submit(Vec::new(), Work::receipt_only(conn, receipt));
        Ok(())
    }

    fn take_tx(&mut self, conn: ConnId, f: &Frame) -> Result<Tx, Refused> {
        let tx = Self::tx_name(f)?;
        self.conns
            .get_mut(&conn)
            .and_then(|c| c.txs.remove(&tx))
            .ok_or_else(|| Refused::new(format!("unknown transaction {tx:?}")))
    }

    /// One atomic batch: every send and every ack of the transaction.
    fn on_commit(&mut self, conn: ConnId, f: &Frame) -> Result<(), Refused> {
        let tx = self.take_tx(conn, f)?;
        let receipt = f.header("receipt").map(str::to_owned);
        let mut entries = Vec::new();
        let mut sends = Vec::new();
        let mut dups = Vec::new();
        for s in tx.sends {
            if let Err(e) = self.plan_one_send(
                s.dest,
                s.persistent,
                s.dup_id,
                s.message,
                &mut entries,
                &mut sends,
                &mut dups,
            ) {
                // Nothing of the transaction is applied; its acks go back.
                let dead = self.broker.requeue(&tx.acks);
                self.dead_letter_now(conn, dead, None);
                for d in dups {
                    self.planned_dups.remove(&d);
                }
                return Err(e);
            }
        }
        entries.extend(self.broker.settle_entries(&tx.acks));
        let drops = tx.acks.into_iter().filter(|k| !k.durable).collect();
        self.submit(
            entries,
            Work::Frame {
                conn,
                receipt,
                sends,
                drops,
                moves: Vec::new(),
                dups,
            },
        );
        Ok(())
    }

    fn on_abort(&mut self, conn: ConnId, f: &Frame) -> Result<(), Refused> {
        let tx = self.take_tx(conn, f)?;
        let receipt = f.header("receipt").map(str::to_owned);
        // Acked messages of a rolled-back transaction are redelivered, as in JMS.
        let dead = self.broker.requeue(&tx.acks);
        let (entries, moves) = self.dead_letter(&dead);
        self.submit(
            entries,
            Work::Frame {
                conn,
                receipt,
                sends: Vec::new(),
                drops: Vec::new(),
                moves,
                dups: Vec::new(),
            },
        );
        Ok(())
    }

    /// Hands ready messages to consumers as MESSAGE frames.
    pub(super) fn dispatch(&mut self) {
        let early_ack = self.bug(super::PlantedBug::RemoveBeforeAckDurable);
        let conns = &mut self.conns;
        let outputs = &mut self.outputs;
        let dests = &self.config.destinations;
        let housekeeping = &mut self.housekeeping;
        let volatile = &mut self.housekeeping_volatile;
        let now = self.now;
        self.broker.dispatch(&mut |d| {
            let Some(c) = conns.get_mut(&d.conn) else {
                return 0;
            };
            let mut f = Frame::new(Command::Message)
                .with_header("subscription", d.sub_id.as_str())
                .with_header("message-id", d.message_id.to_string())
                .with_header("destination", d.destination.as_str());
            if let Some(a) = d.ack {
                f.push_header("ack", a.to_string());
            }
            if d.deliveries > 1 {
                f.push_header("redelivered", "true");
            }
            f.push_header("delivery-count", d.deliveries.to_string());
            if let Some(orig) = &d.original_address {
                f.push_header("original-destination", dests.spell(orig, d.message.routing));
            }
            for (k, v) in &d.message.headers {
                f.push_header(k.as_str(), v.as_str());
            }
            f.body = d.message.body.clone();
            let bytes = crate::protocol::stomp::encode_to_bytes(&f, c.version);
            let n = bytes.len();
            c.last_send = now;
            outputs.push_back(Output::Conn(ConnRequest::Send {
                conn: d.conn,
                bytes,
            }));
            if early_ack && d.ack.is_some() {
                housekeeping.push(Entry::Put(Record::Acked {
                    id: d.message_id,
                    queue: d.queue,
                }));
            }
            if let Some(k) = d.auto_settled {
                if k.durable {
                    housekeeping.extend(d.auto_settle_entries);
                } else {
                    volatile.push(k);
                }
            }
            n
        });
    }

    /// Connect timeouts, heart-beats out, and silent peers.
    pub(super) fn check_heartbeats(&mut self) {
        let now = self.now;
        let mut timed_out = Vec::new();
        let mut beat = Vec::new();
        for (id, c) in &self.conns {
            if !c.connected {
                if now >= c.opened_at + self.config.connect_timeout_ms {
                    timed_out.push((*id, "no CONNECT frame in time"));
                }
                continue;
            }
            if c.hb_recv_ms > 0 && now >= c.last_recv + 2 * c.hb_recv_ms {
                timed_out.push((*id, "heart-beat timeout: nothing received from the client"));
                continue;
            }
            if c.hb_send_ms > 0 && now >= c.last_send + c.hb_send_ms {
                beat.push(*id);
            }
        }
        for id in beat {
            self.send_bytes(id, bytes::Bytes::from_static(HEARTBEAT));
        }
        for (id, why) in timed_out {
            self.protocol_error(id, why, "", None);
        }
    }
}

fn parse_heartbeat(h: &str) -> Option<(u64, u64)> {
    let (a, b) = h.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}
