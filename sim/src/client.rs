//! Simulated STOMP clients: producers that resend what has no receipt after
//! a failover, and consumers that acknowledge what they get. Each is a small
//! sans-IO state machine; the world carries out its [`Action`]s.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use halyard_core::protocol::stomp::{
    encode_to_bytes, Command, Decoded, Decoder, Frame, Limits, Version,
};
use halyard_core::Millis;

use crate::rng::Rng;

/// Header naming the producer of a simulated message.
pub const PRODUCER: &str = "sim-producer";
/// Header with the producer's sequence number.
pub const SEQ: &str = "sim-seq";
/// Header naming the destination the producer sent to (kept through dead-lettering).
pub const ORIGIN: &str = "sim-origin";

#[derive(Clone, Debug)]
pub enum Action {
    Connect {
        node: usize,
    },
    Send(Bytes),
    Close,
    Timer(Millis),
    Trace(String),
    /// A per-message line: kept in a printed trace, not hashed (so runs
    /// without a trace need not format it).
    Detail(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckStyle {
    /// client-individual: ACK each message.
    Individual,
    /// client: ACK each message, which acknowledges everything before it.
    Cumulative,
    /// client-individual, with ACKs grouped in transactions of a few messages.
    Transactional,
    /// auto: the broker counts a message consumed once sent (at most once).
    Auto,
}

#[derive(Clone, Debug)]
pub enum Kind {
    Producer {
        destination: String,
        total: u64,
        window: usize,
        duplicate_ids: bool,
        /// Messages per transaction; None sends plain SENDs.
        transaction_size: Option<usize>,
        /// Wait until every durable subscription exists before sending.
        wait_for_subscriptions: bool,
    },
    Consumer {
        destination: String,
        ack: AckStyle,
        durable: Option<(String, String)>,
        nack_chance: f64,
    },
}

/// One message as a consumer saw it.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub producer: String,
    pub seq: u64,
    pub origin: String,
    pub message_id: String,
    pub redelivered: bool,
    /// Connection session of the consumer (changes on every reconnect).
    pub session: u64,
    pub at: Millis,
}

pub struct Client {
    pub name: String,
    pub kind: Kind,
    nodes: usize,
    cursor: usize,
    connected: bool,
    connecting: bool,
    decoder: Decoder,
    backoff_ms: u64,
    rng: Rng,
    pub session: u64,
    // producer
    next_seq: u64,
    /// seq -> sends of it so far
    pub pending: BTreeMap<u64, u32>,
    pub receipted: BTreeSet<u64>,
    pub resent: BTreeSet<u64>,
    pub sent: BTreeSet<u64>,
    tx_in_flight: BTreeMap<String, Vec<u64>>,
    next_tx: u64,
    // consumer
    pub deliveries: Vec<Delivery>,
    subscribed_once: bool,
    pub last_delivery_at: Millis,
    /// Set by the world: every durable subscription exists.
    pub may_start: bool,
    pub done: bool,
    connect_deadline: Millis,
    /// Transactional consumer: the open ack transaction and its size.
    open_tx: Option<(String, u32)>,
    /// Report every message (for a printed trace).
    pub verbose: bool,
}

/// How long a client waits for CONNECTED before trying another broker.
const CONNECT_TIMEOUT_MS: Millis = 5_000;

impl Client {
    pub fn new(name: String, kind: Kind, nodes: usize, rng: Rng) -> Client {
        let may_start = !matches!(
            kind,
            Kind::Producer {
                wait_for_subscriptions: true,
                ..
            }
        );
        Client {
            name,
            kind,
            nodes,
            cursor: 0,
            connected: false,
            connecting: false,
            decoder: Decoder::new(Limits::default()),
            backoff_ms: 50,
            rng,
            session: 0,
            next_seq: 0,
            pending: BTreeMap::new(),
            receipted: BTreeSet::new(),
            resent: BTreeSet::new(),
            sent: BTreeSet::new(),
            tx_in_flight: BTreeMap::new(),
            next_tx: 0,
            deliveries: Vec::new(),
            subscribed_once: false,
            last_delivery_at: 0,
            may_start,
            done: false,
            connect_deadline: 0,
            open_tx: None,
            verbose: false,
        }
    }

    pub fn is_producer(&self) -> bool {
        matches!(self.kind, Kind::Producer { .. })
    }

    pub fn subscribed_once(&self) -> bool {
        self.subscribed_once
    }

    pub fn uses_dup_ids(&self) -> bool {
        matches!(
            self.kind,
            Kind::Producer {
                duplicate_ids: true,
                ..
            }
        )
    }

    /// Producer finished: every message receipted.
    pub fn producer_done(&self) -> bool {
        match &self.kind {
            Kind::Producer { total, .. } => self.receipted.len() as u64 >= *total,
            Kind::Consumer { .. } => true,
        }
    }

    pub fn start(&mut self, now: Millis) -> Vec<Action> {
        let delay = self.rng.range(0, 300);
        vec![Action::Timer(now + delay)]
    }

    fn try_connect(&mut self, now: Millis) -> Vec<Action> {
        if self.connected || self.done {
            return vec![];
        }
        if self.connecting {
            // No CONNECTED in time (a paused broker): give up on this one.
            if now >= self.connect_deadline {
                self.connecting = false;
                self.cursor += 1;
                return vec![
                    Action::Trace(format!("{}: connect timed out", self.name)),
                    Action::Close,
                    Action::Timer(now + 10),
                ];
            }
            return vec![Action::Timer(self.connect_deadline)];
        }
        self.connecting = true;
        self.connect_deadline = now + CONNECT_TIMEOUT_MS;
        let node = self.cursor % self.nodes;
        vec![
            Action::Connect { node },
            Action::Timer(self.connect_deadline),
        ]
    }

    /// The TCP connection was accepted: say CONNECT.
    pub fn on_open(&mut self) -> Vec<Action> {
        self.decoder = Decoder::new(Limits::default());
        let mut f = Frame::new(Command::Connect)
            .with_header("accept-version", "1.2")
            .with_header("host", "sim");
        if let Kind::Consumer {
            durable: Some((client_id, _)),
            ..
        } = &self.kind
        {
            f.push_header("client-id", client_id.as_str());
        }
        vec![Action::Send(encode_to_bytes(&f, Version::V1_0))]
    }

    /// Refused, reset, or closed by the broker: try the next node later.
    pub fn on_closed(&mut self, now: Millis) -> Vec<Action> {
        let was = self.connected;
        self.connected = false;
        self.connecting = false;
        self.cursor += 1;
        self.tx_in_flight.clear();
        self.open_tx = None;
        self.backoff_ms = if was {
            50
        } else {
            (self.backoff_ms * 2).min(1_000)
        };
        let mut out = vec![];
        if was {
            out.push(Action::Trace(format!(
                "{}: connection lost, trying again",
                self.name
            )));
        }
        if !self.done {
            out.push(Action::Timer(now + self.backoff_ms + self.rng.range(0, 50)));
        }
        out
    }

    pub fn on_timer(&mut self, now: Millis) -> Vec<Action> {
        if !self.connected {
            return self.try_connect(now);
        }
        let mut out = self.produce_some(now);
        if self.is_producer() && !self.done {
            out.push(Action::Timer(now + self.rng.range(5, 40)));
        }
        out
    }

    pub fn on_bytes(&mut self, now: Millis, bytes: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        if let Err(e) = self.decoder.push(bytes) {
            out.push(Action::Trace(format!(
                "{}: undecodable bytes from broker: {e}",
                self.name
            )));
            out.push(Action::Close);
            return out;
        }
        loop {
            match self.decoder.next() {
                Ok(Some(Decoded::Frame(f))) => out.extend(self.on_frame(now, f)),
                Ok(Some(Decoded::HeartBeat)) => {}
                Ok(None) => break,
                Err(e) => {
                    out.push(Action::Trace(format!(
                        "{}: bad frame from broker: {e}",
                        self.name
                    )));
                    out.push(Action::Close);
                    break;
                }
            }
        }
        out
    }

    fn send_frame(f: &Frame) -> Action {
        Action::Send(encode_to_bytes(f, Version::V1_2))
    }

    fn on_frame(&mut self, now: Millis, f: Frame) -> Vec<Action> {
        let mut out = Vec::new();
        match f.command {
            Command::Connected => {
                self.connected = true;
                self.connecting = false;
                self.session += 1;
                self.decoder.set_version(Version::V1_2);
                out.push(Action::Trace(format!(
                    "{}: connected (session {})",
                    self.name, self.session
                )));
                match self.kind.clone() {
                    Kind::Producer { .. } => {
                        out.extend(self.resend_pending());
                        out.extend(self.produce_some(now));
                        out.push(Action::Timer(now + self.rng.range(5, 40)));
                    }
                    Kind::Consumer {
                        destination,
                        durable,
                        ..
                    } => {
                        let mut s = Frame::new(Command::Subscribe)
                            .with_header("id", "s")
                            .with_header("destination", destination.as_str())
                            .with_header(
                                "ack",
                                match &self.kind {
                                    Kind::Consumer {
                                        ack: AckStyle::Cumulative,
                                        ..
                                    } => "client",
                                    Kind::Consumer {
                                        ack: AckStyle::Auto,
                                        ..
                                    } => "auto",
                                    _ => "client-individual",
                                },
                            )
                            .with_header("receipt", "sub");
                        if let Some((_, name)) = durable {
                            s.push_header("durable-subscription-name", name.as_str());
                        }
                        out.push(Self::send_frame(&s));
                    }
                }
            }
            Command::Receipt => {
                let id = f.header("receipt-id").unwrap_or_default().to_string();
                if id == "sub" {
                    self.subscribed_once = true;
                } else if let Some(seq) = id.strip_prefix('m').and_then(|s| s.parse::<u64>().ok()) {
                    if self.pending.remove(&seq).is_some() {
                        self.receipted.insert(seq);
                    }
                } else if let Some(seqs) = self.tx_in_flight.remove(&id) {
                    for seq in seqs {
                        if self.pending.remove(&seq).is_some() {
                            self.receipted.insert(seq);
                        }
                    }
                }
                if self.is_producer() && self.producer_done() && !self.done {
                    self.done = true;
                    out.push(Action::Trace(format!(
                        "{}: all {} messages receipted",
                        self.name,
                        self.receipted.len()
                    )));
                    out.push(Self::send_frame(&Frame::new(Command::Disconnect)));
                    out.push(Action::Close);
                }
            }
            Command::Message => {
                self.last_delivery_at = now;
                let d = Delivery {
                    producer: f.header(PRODUCER).unwrap_or_default().to_string(),
                    seq: f
                        .header(SEQ)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(u64::MAX),
                    origin: f.header(ORIGIN).unwrap_or_default().to_string(),
                    message_id: f.header("message-id").unwrap_or_default().to_string(),
                    redelivered: f.header("redelivered") == Some("true"),
                    session: self.session,
                    at: now,
                };
                if let Kind::Consumer {
                    ack, nack_chance, ..
                } = &self.kind
                {
                    let (ack, nack_chance) = (ack.clone(), *nack_chance);
                    let ack_id = f.header("ack").unwrap_or_default().to_string();
                    let nack = ack == AckStyle::Individual && self.rng.chance(nack_chance);
                    let what = match (&ack, nack) {
                        (AckStyle::Auto, _) => "auto",
                        (_, true) => "NACK",
                        _ => "ACK",
                    };
                    if self.verbose {
                        out.push(Action::Detail(format!(
                            "{}: got {}:{} id {}{}, {what}",
                            self.name,
                            d.producer,
                            d.seq,
                            d.message_id,
                            if d.redelivered { " (redelivered)" } else { "" },
                        )));
                    }
                    self.deliveries.push(d);
                    match ack {
                        AckStyle::Auto => {}
                        AckStyle::Transactional => {
                            if self.open_tx.is_none() {
                                self.next_tx += 1;
                                let t = format!("a{}", self.next_tx);
                                out.push(Self::send_frame(
                                    &Frame::new(Command::Begin)
                                        .with_header("transaction", t.as_str()),
                                ));
                                self.open_tx = Some((t, 0));
                            }
                            if let Some((t, n)) = self.open_tx.as_mut() {
                                out.push(Self::send_frame(
                                    &Frame::new(Command::Ack)
                                        .with_header("id", ack_id)
                                        .with_header("transaction", t.as_str()),
                                ));
                                *n += 1;
                                if *n >= 3 {
                                    out.push(Self::send_frame(
                                        &Frame::new(Command::Commit)
                                            .with_header("transaction", t.as_str()),
                                    ));
                                    self.open_tx = None;
                                }
                            }
                        }
                        _ => {
                            let cmd = if nack { Command::Nack } else { Command::Ack };
                            out.push(Self::send_frame(&Frame::new(cmd).with_header("id", ack_id)));
                        }
                    }
                } else {
                    self.deliveries.push(d);
                }
            }
            Command::Error => {
                out.push(Action::Trace(format!(
                    "{}: ERROR from broker: {}",
                    self.name,
                    f.header("message").unwrap_or("")
                )));
            }
            _ => {}
        }
        out
    }

    fn message(&self, seq: u64, tx: Option<&str>) -> Frame {
        let Kind::Producer {
            destination,
            duplicate_ids,
            ..
        } = &self.kind
        else {
            unreachable!("only producers send messages")
        };
        let seq_text = decimal(seq);
        let mut f = Frame {
            command: Command::Send,
            headers: Vec::with_capacity(6),
            body: Bytes::new(),
        };
        f.push_header("destination", destination.as_str());
        f.push_header(PRODUCER, self.name.as_str());
        f.push_header(SEQ, seq_text.as_str());
        f.push_header(ORIGIN, destination.as_str());
        match tx {
            Some(t) => f.push_header("transaction", t),
            None => f.push_header("receipt", ["m", &seq_text].concat()),
        }
        if *duplicate_ids {
            f.push_header("_AMQ_DUPL_ID", [&self.name, ":", &seq_text].concat());
        }
        f.with_body(Bytes::from(
            [&self.name, ":", &seq_text, ":payload"].concat(),
        ))
    }

    /// Frames that send `seqs`, as plain sends or one transaction.
    fn send_seqs(&mut self, seqs: &[u64]) -> Vec<Action> {
        let transaction_size = match &self.kind {
            Kind::Producer {
                transaction_size, ..
            } => *transaction_size,
            Kind::Consumer { .. } => return vec![],
        };
        for s in seqs {
            self.sent.insert(*s);
            let n = self.pending.entry(*s).or_insert(0);
            *n += 1;
            if *n > 1 {
                self.resent.insert(*s);
            }
        }
        match transaction_size {
            None => seqs
                .iter()
                .map(|s| Self::send_frame(&self.message(*s, None)))
                .collect(),
            Some(_) => {
                self.next_tx += 1;
                let name = format!("t{}", self.next_tx);
                let mut frames =
                    vec![Frame::new(Command::Begin).with_header("transaction", name.as_str())];
                for s in seqs {
                    frames.push(self.message(*s, Some(&name)));
                }
                frames.push(
                    Frame::new(Command::Commit)
                        .with_header("transaction", name.as_str())
                        .with_header("receipt", name.as_str()),
                );
                self.tx_in_flight.insert(name, seqs.to_vec());
                frames.iter().map(Self::send_frame).collect()
            }
        }
    }

    fn resend_pending(&mut self) -> Vec<Action> {
        let seqs: Vec<u64> = self.pending.keys().copied().collect();
        if seqs.is_empty() {
            return vec![];
        }
        let chunk = match &self.kind {
            Kind::Producer {
                transaction_size: Some(n),
                ..
            } => *n,
            _ => seqs.len(),
        };
        let mut out = vec![Action::Trace(format!(
            "{}: resending {} unreceipted",
            self.name,
            seqs.len()
        ))];
        for c in seqs.chunks(chunk.max(1)) {
            out.extend(self.send_seqs(c));
        }
        out
    }

    fn produce_some(&mut self, _now: Millis) -> Vec<Action> {
        let Kind::Producer {
            total,
            window,
            transaction_size,
            wait_for_subscriptions,
            ..
        } = self.kind
        else {
            return vec![];
        };
        if !self.connected || (wait_for_subscriptions && !self.may_start) {
            return vec![];
        }
        let n = transaction_size.unwrap_or(1);
        if self.pending.len() + n > window.max(n) || self.next_seq >= total {
            return vec![];
        }
        let end = (self.next_seq + n as u64).min(total);
        let seqs: Vec<u64> = (self.next_seq..end).collect();
        self.next_seq = end;
        self.send_seqs(&seqs)
    }
}

/// `n` in decimal, as `to_string` writes it (without the formatting machinery).
fn decimal(mut n: u64) -> String {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[i..].iter().map(|&d| char::from(d)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal_is_to_string() {
        for n in [0, 1, 9, 10, 99, 100, 12_345, u64::MAX] {
            assert_eq!(super::decimal(n), n.to_string());
        }
    }
}
