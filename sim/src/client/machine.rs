//! A simulated client: a producer that resends what was not acknowledged
//! after a failover, or a consumer that settles what it gets, speaking
//! STOMP or AMQP 1.0. Each is a small sans-IO state machine; the world
//! carries out its [`Action`]s. What is the same for both protocols
//! (connecting and failing over, the window of sends, what counts as
//! acknowledged, how a delivery is settled) is here; the protocols are in
//! `stomp` and `amqp`.

use std::collections::{BTreeMap, BTreeSet};

use halyard_core::Millis;

use super::amqp::AmqpWire;
use super::kinds::{AckStyle, Action, Delivery, Incoming, Kind, Protocol, Settle, WireEvent};
use super::stomp::StompWire;
use crate::rng::Rng;

/// How long a client waits to be connected before trying another broker.
const CONNECT_TIMEOUT_MS: Millis = 5_000;

/// The protocol side of a client.
enum Wire {
    Stomp(Box<StompWire>),
    Amqp(Box<AmqpWire>),
}

pub struct Client {
    pub name: String,
    pub kind: Kind,
    pub protocol: Protocol,
    wire: Wire,
    nodes: usize,
    cursor: usize,
    connected: bool,
    connecting: bool,
    backoff_ms: u64,
    rng: Rng,
    pub session: u64,
    // producer
    next_seq: u64,
    /// seq -> sends of it so far
    pub pending: BTreeMap<u64, u32>,
    /// Acknowledged: receipted (STOMP), accepted (AMQP), or in a
    /// transaction whose commit was answered.
    pub receipted: BTreeSet<u64>,
    pub resent: BTreeSet<u64>,
    pub sent: BTreeSet<u64>,
    // consumer
    pub deliveries: Vec<Delivery>,
    /// This connection's deliveries by their protocol token, for the
    /// answer to a transaction that accepted them.
    by_token: BTreeMap<u64, usize>,
    /// An empty buffer for what the protocol reports, kept to save allocations.
    events: Vec<WireEvent>,
    subscribed_once: bool,
    pub last_delivery_at: Millis,
    /// Set by the world: every durable subscription exists.
    pub may_start: bool,
    pub done: bool,
    /// Logs in with (user, password) where the nodes have users.
    pub login: Option<(String, String)>,
    /// This client's user may not do what it does (the intruder): it stops
    /// at its first refusal.
    pub expect_refusal: bool,
    /// The broker refused one of its operations for want of a permission.
    pub refused: bool,
    connect_deadline: Millis,
    /// When a producer's pacing timer is due: one chain of them per
    /// producer, however many times it connects (each connect used to start
    /// another, so a producer that reconnected often polled every
    /// millisecond or so).
    pace_at: Option<Millis>,
    /// Report every message (for a printed trace).
    pub verbose: bool,
}

impl Client {
    pub fn new(name: String, kind: Kind, protocol: Protocol, nodes: usize, rng: Rng) -> Client {
        let may_start = !matches!(
            kind,
            Kind::Producer {
                wait_for_subscriptions: true,
                ..
            }
        );
        let wire = match protocol {
            Protocol::Stomp => Wire::Stomp(Box::new(StompWire::new(&name, &kind))),
            Protocol::Amqp => Wire::Amqp(Box::new(AmqpWire::new(&name, &kind))),
        };
        Client {
            name,
            kind,
            protocol,
            wire,
            nodes,
            cursor: 0,
            connected: false,
            connecting: false,
            backoff_ms: 50,
            rng,
            session: 0,
            next_seq: 0,
            pending: BTreeMap::new(),
            receipted: BTreeSet::new(),
            resent: BTreeSet::new(),
            sent: BTreeSet::new(),
            deliveries: Vec::new(),
            by_token: BTreeMap::new(),
            events: Vec::new(),
            subscribed_once: false,
            last_delivery_at: 0,
            may_start,
            done: false,
            login: None,
            expect_refusal: false,
            refused: false,
            connect_deadline: 0,
            pace_at: None,
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

    /// Producer finished: every message acknowledged (or, for a client
    /// without the permission, refused).
    pub fn producer_done(&self) -> bool {
        match &self.kind {
            Kind::Producer { total, .. } => self.refused || self.receipted.len() as u64 >= *total,
            Kind::Consumer { .. } => true,
        }
    }

    /// The broker refused an operation for want of a permission: a client
    /// meant to be refused stops there (it would be refused again).
    fn note_refusal(&mut self, what: &str) {
        if what.contains("(permission ") {
            self.refused = true;
            if self.expect_refusal {
                self.done = true;
            }
        }
    }

    pub fn start(&mut self, now: Millis, out: &mut Vec<Action>) {
        let delay = self.rng.range(0, 300);
        out.push(Action::Timer(now + delay));
    }

    fn try_connect(&mut self, now: Millis, out: &mut Vec<Action>) {
        if self.connected || self.done {
            return;
        }
        if self.connecting {
            // Not connected in time (a paused broker): give up on this one.
            if now >= self.connect_deadline {
                self.connecting = false;
                self.cursor += 1;
                out.push(Action::Trace(format!("{}: connect timed out", self.name)));
                out.push(Action::Close);
                out.push(Action::Timer(now + 10));
                return;
            }
            out.push(Action::Timer(self.connect_deadline));
            return;
        }
        self.connecting = true;
        self.connect_deadline = now + CONNECT_TIMEOUT_MS;
        let node = self.cursor % self.nodes;
        out.push(Action::Connect { node });
        out.push(Action::Timer(self.connect_deadline));
    }

    /// The TCP connection was accepted: greet the broker.
    pub fn on_open(&mut self, out: &mut Vec<Action>) {
        let login = self.login.as_ref();
        match &mut self.wire {
            Wire::Stomp(w) => w.greet(out, login),
            Wire::Amqp(w) => w.greet(out, login),
        }
    }

    /// Refused, reset, or closed by the broker: try the next node later.
    pub fn on_closed(&mut self, now: Millis, out: &mut Vec<Action>) {
        let was = self.connected;
        self.connected = false;
        self.connecting = false;
        self.cursor += 1;
        self.by_token.clear();
        match &mut self.wire {
            Wire::Stomp(w) => w.reset(),
            Wire::Amqp(w) => w.reset(),
        }
        self.backoff_ms = if was {
            50
        } else {
            (self.backoff_ms * 2).min(1_000)
        };
        if was {
            out.push(Action::Trace(format!(
                "{}: connection lost, trying again",
                self.name
            )));
        }
        if !self.done {
            out.push(Action::Timer(now + self.backoff_ms + self.rng.range(0, 50)));
        }
    }

    pub fn on_timer(&mut self, now: Millis, out: &mut Vec<Action>) {
        if !self.connected {
            self.try_connect(now, out);
            return;
        }
        if let Wire::Amqp(w) = &mut self.wire {
            w.on_timer(now, out);
        }
        self.produce_some(now, out);
        self.pace(now, out);
    }

    /// Arms a producer's pacing timer unless one is pending.
    fn pace(&mut self, now: Millis, out: &mut Vec<Action>) {
        if !self.is_producer() || self.done || self.pace_at.is_some_and(|t| t > now) {
            return;
        }
        let t = now + self.rng.range(5, 40);
        self.pace_at = Some(t);
        out.push(Action::Timer(t));
    }

    pub fn on_bytes(&mut self, now: Millis, bytes: &[u8], out: &mut Vec<Action>) {
        // Reused, so decoding a frame costs no allocation for its events.
        let mut events = std::mem::take(&mut self.events);
        match &mut self.wire {
            Wire::Stomp(w) => w.on_bytes(bytes, &mut events),
            Wire::Amqp(w) => w.on_bytes(now, bytes, &mut events, out),
        }
        for e in events.drain(..) {
            if !self.on_event(now, e, out) {
                break;
            }
        }
        events.clear();
        self.events = events;
    }

    /// Handles what the protocol said; false once the connection is given up.
    fn on_event(&mut self, now: Millis, e: WireEvent, out: &mut Vec<Action>) -> bool {
        match e {
            WireEvent::Connected => {
                self.connected = true;
                self.connecting = false;
                self.session += 1;
                out.push(Action::Trace(format!(
                    "{}: connected (session {})",
                    self.name, self.session
                )));
                match &self.kind {
                    Kind::Producer { .. } => {
                        self.resend_pending(out);
                        self.produce_some(now, out);
                        self.pace(now, out);
                    }
                    Kind::Consumer { .. } => {
                        if let Wire::Stomp(w) = &mut self.wire {
                            w.subscribe(out);
                        }
                    }
                }
            }
            WireEvent::Subscribed => self.subscribed_once = true,
            WireEvent::Acknowledged(seqs) => {
                for seq in seqs {
                    if self.pending.remove(&seq).is_some() {
                        self.receipted.insert(seq);
                    }
                }
                if self.is_producer() && self.producer_done() && !self.done {
                    self.done = true;
                    out.push(Action::Trace(format!(
                        "{}: all {} messages receipted",
                        self.name,
                        self.receipted.len()
                    )));
                    match &mut self.wire {
                        Wire::Stomp(w) => w.goodbye(out),
                        Wire::Amqp(w) => w.goodbye(out),
                    }
                    out.push(Action::Close);
                }
            }
            WireEvent::Delivered(incoming) => self.on_delivery(now, incoming, out),
            WireEvent::AcceptsCommitted(tokens) => {
                for token in tokens {
                    if let Some(&i) = self.by_token.get(&token) {
                        self.deliveries[i].committed_at = Some(now);
                    }
                }
            }
            WireEvent::Note(what) => {
                self.note_refusal(&what);
                out.push(Action::Trace(format!("{}: {what}", self.name)))
            }
            WireEvent::Broken(why) => {
                self.note_refusal(&why);
                out.push(Action::Trace(format!("{}: {why}", self.name)));
                out.push(Action::Close);
                self.on_closed(now, out);
                return false;
            }
        }
        true
    }

    /// Records a delivery and settles it as this consumer does.
    fn on_delivery(&mut self, now: Millis, m: Incoming, out: &mut Vec<Action>) {
        self.last_delivery_at = now;
        let Kind::Consumer {
            ack, nack_chance, ..
        } = &self.kind
        else {
            return;
        };
        let (ack, nack_chance) = (ack.clone(), *nack_chance);
        let settle = if ack == AckStyle::Individual && self.rng.chance(nack_chance) {
            // AMQP gives a message back two ways; STOMP has NACK only.
            if self.protocol == Protocol::Amqp && self.rng.chance(0.5) {
                Settle::Release
            } else {
                Settle::Requeue
            }
        } else {
            Settle::Accept
        };
        if self.verbose {
            let what = match (&ack, settle, self.protocol) {
                (AckStyle::Auto, _, _) => "auto",
                (_, Settle::Accept, Protocol::Stomp) => "ACK",
                (_, Settle::Requeue, Protocol::Stomp) => "NACK",
                (_, Settle::Accept, Protocol::Amqp) => "accepted",
                (_, Settle::Requeue, Protocol::Amqp) => "modified",
                (_, Settle::Release, _) => "released",
            };
            let id = if m.message_id.is_empty() {
                format!("delivery {}", m.token)
            } else {
                format!("id {}", m.message_id)
            };
            out.push(Action::Detail(format!(
                "{}: got {}:{} {id}{}, {what}",
                self.name,
                m.producer,
                m.seq,
                if m.redelivered { " (redelivered)" } else { "" },
            )));
        }
        // Only a transaction's answer refers back to deliveries by token.
        if ack == AckStyle::Transactional && self.protocol == Protocol::Amqp {
            self.by_token.insert(m.token, self.deliveries.len());
        }
        self.deliveries.push(Delivery {
            producer: m.producer,
            seq: m.seq,
            origin: m.origin,
            message_id: m.message_id,
            redelivered: m.redelivered,
            released: settle == Settle::Release,
            committed_at: None,
            session: self.session,
            at: now,
        });
        match &mut self.wire {
            Wire::Stomp(w) => w.settle(m.ack_id, settle, out),
            Wire::Amqp(w) => w.settle(m.token, settle, out),
        }
    }

    /// Sends `seqs`, as plain sends or one transaction.
    fn send_seqs(&mut self, seqs: &[u64], out: &mut Vec<Action>) {
        let transaction = match &self.kind {
            Kind::Producer {
                transaction_size, ..
            } => transaction_size.is_some(),
            Kind::Consumer { .. } => return,
        };
        for s in seqs {
            self.sent.insert(*s);
            let n = self.pending.entry(*s).or_insert(0);
            *n += 1;
            if *n > 1 {
                self.resent.insert(*s);
            }
        }
        match &mut self.wire {
            Wire::Stomp(w) => w.send(seqs, transaction, out),
            Wire::Amqp(w) => w.send(seqs, transaction, out),
        }
    }

    fn resend_pending(&mut self, out: &mut Vec<Action>) {
        let seqs: Vec<u64> = self.pending.keys().copied().collect();
        if seqs.is_empty() {
            return;
        }
        let chunk = match &self.kind {
            Kind::Producer {
                transaction_size: Some(n),
                ..
            } => *n,
            _ => seqs.len(),
        };
        out.push(Action::Trace(format!(
            "{}: resending {} unreceipted",
            self.name,
            seqs.len()
        )));
        for c in seqs.chunks(chunk.max(1)) {
            self.send_seqs(c, out);
        }
    }

    fn produce_some(&mut self, _now: Millis, out: &mut Vec<Action>) {
        let Kind::Producer {
            total,
            window,
            transaction_size,
            wait_for_subscriptions,
            ..
        } = self.kind
        else {
            return;
        };
        if !self.connected || (wait_for_subscriptions && !self.may_start) {
            return;
        }
        let n = transaction_size.unwrap_or(1);
        if self.pending.len() + n > window.max(n) || self.next_seq >= total {
            return;
        }
        let end = (self.next_seq + n as u64).min(total);
        let seqs: Vec<u64> = (self.next_seq..end).collect();
        self.next_seq = end;
        self.send_seqs(&seqs, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timers a connected producer gets in its sixth to tenth second
    /// connected, after `sessions` short sessions before (each timer is
    /// handed back to it when due, as the world does).
    fn timers_in_a_session_after(sessions: u64) -> usize {
        let kind = Kind::Producer {
            destination: "/queue/orders".into(),
            total: 1_000_000,
            window: 20,
            duplicate_ids: false,
            transaction_size: None,
            wait_for_subscriptions: false,
        };
        let mut c = Client::new("qp0".into(), kind, Protocol::Stomp, 3, Rng::new(7));
        let mut due: Vec<Millis> = Vec::new();
        let mut out = Vec::new();
        let mut now = 0;
        c.start(now, &mut out);
        let mut fired = 0;
        for session in 0..=sessions {
            // Fire what is due until the client asks to connect.
            while !c.connecting {
                take_timers(&mut out, &mut due);
                due.sort_unstable();
                now = due.remove(0);
                c.on_timer(now, &mut out);
            }
            c.on_open(&mut out);
            c.on_bytes(now, b"CONNECTED\nversion:1.2\n\n\0", &mut out);
            assert!(c.connected, "the CONNECTED frame connects it");
            let last = session == sessions;
            let (count_from, until) = if last {
                (now + 5_000, now + 10_000)
            } else {
                (Millis::MAX, now + 500)
            };
            loop {
                take_timers(&mut out, &mut due);
                due.sort_unstable();
                if due.first().is_none_or(|&t| t > until) {
                    break;
                }
                now = due.remove(0);
                if now >= count_from {
                    fired += 1;
                }
                c.on_timer(now, &mut out);
            }
            now = until;
            c.on_closed(now, &mut out);
        }
        fired
    }

    fn take_timers(out: &mut Vec<Action>, due: &mut Vec<Millis>) {
        for a in out.drain(..) {
            if let Action::Timer(t) = a {
                due.push(t);
            }
        }
    }

    #[test]
    fn a_producer_keeps_one_pacing_timer_however_often_it_reconnects() {
        let once = timers_in_a_session_after(0);
        let often = timers_in_a_session_after(30);
        // One chain of 5 to 40 ms timers: 125 to 1,000 in 5 s.
        assert!((125..=1_000).contains(&once), "{once} timers in 5 s");
        assert!(
            often <= once * 3 / 2,
            "{often} timers after 30 reconnects, {once} after none"
        );
    }
}
