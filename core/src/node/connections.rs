//! Client connections: telling the protocol from the first bytes, running
//! each connection's protocol session, carrying out what it asks for, flow
//! control, deliveries, heart-beats and goodbyes.

use bytes::Bytes;
use tracing::debug;

use super::admission::{Change, DiskUsage, Permille};
use super::config::PlantedBug;
use super::conn::{Conn, Session};
use super::events::Event;
use super::node::Node;
use super::ops::{Refusal, SessionAction, SessionCx};
use super::ports::{ConnRequest, Output, WireBytes};
use super::work::{Effects, Work};
use crate::broker::RefKey;
use crate::ha::HaState;
use crate::ids::ConnId;
use crate::journal::{Entry, Record};
use crate::protocol::amqp::{AmqpSession, Symbol};
use crate::protocol::stomp::StompSession;

/// How many first bytes decide the protocol: AMQP's header starts `AMQP`.
const SNIFF_BYTES: usize = 4;
const AMQP_PREFIX: &[u8] = b"AMQP";

/// Runs `$body` with `$cx`, a [`SessionCx`] for connection `$conn`, without
/// borrowing all of `$node` (the session, the broker and the action buffer
/// are different fields).
macro_rules! with_cx {
    ($node:ident, $conn:expr, $cx:ident, $body:expr) => {{
        let live = $node.state == HaState::Live;
        let mut $cx = SessionCx {
            now: $node.now,
            conn: $conn,
            config: &$node.config,
            broker: &$node.broker,
            live,
            principal: $node.principals.get(&$conn),
            gate: $node.admission.gate(&$node.config),
            actions: &mut $node.actions,
        };
        $body
    }};
}

impl Node {
    pub(crate) fn on_opened(&mut self, conn: ConnId) {
        let mut c = Conn::new(self.now);
        c.refusal = self.connection_refusal();
        self.conns.insert(conn, c);
    }

    /// The session's answer to a login, then what it buffered meanwhile.
    pub(crate) fn session_login_checked(&mut self, conn: ConnId, ok: bool) {
        if let Some(s) = self.conns.get_mut(&conn).and_then(|c| c.session.as_mut()) {
            with_cx!(self, conn, cx, s.get().login_checked(&mut cx, ok));
            self.carry_out(conn);
            self.run_session(conn);
        }
    }

    pub(crate) fn on_received(&mut self, conn: ConnId, bytes: Bytes) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let first = c.session.is_none();
        let bytes: Bytes = if first {
            c.sniffed.extend_from_slice(&bytes);
            let n = c.sniffed.len().min(SNIFF_BYTES);
            if c.sniffed[..n] == AMQP_PREFIX[..n] && n < SNIFF_BYTES {
                return; // could still be AMQP: wait for more
            }
            c.session = Some(if c.sniffed.starts_with(AMQP_PREFIX) {
                debug!(%conn, "AMQP client");
                let mut amqp = self.config.amqp.clone();
                if self.principals.contains_key(&conn) {
                    // A TLS client certificate named the user: SASL
                    // EXTERNAL says "that one" (PLAIN stays for clients
                    // that always send a password).
                    amqp.sasl_mechanisms = vec![Symbol::from("EXTERNAL"), Symbol::from("PLAIN")];
                }
                Session::Amqp(Box::new(AmqpSession::new(amqp)))
            } else {
                Session::Stomp(Box::new(StompSession::new(&self.config, c.opened_at)))
            });
            Bytes::from(std::mem::take(&mut c.sniffed))
        } else {
            bytes
        };
        if let Some(s) = c.session.as_mut() {
            with_cx!(self, conn, cx, s.get().receive(&mut cx, bytes));
            // A connection that arrived while the node was not live (the
            // listener was closing) is told so in its own protocol. One
            // that arrived earlier keeps its bytes unread: a draining node
            // closes it once its work in flight is answered.
            if first && self.state != HaState::Live {
                with_cx!(self, conn, cx, s.get().refuse(&mut cx, &Refusal::NotLive));
            }
        }
        self.carry_out(conn);
        self.refuse_if_due(conn);
        self.run_session(conn);
    }

    /// A connection over a limit is told so once its protocol can say it:
    /// STOMP at once, AMQP once its open arrived (a close before the open
    /// exchange cannot carry an error condition).
    fn refuse_if_due(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(s) = c.session.as_mut() else {
            return;
        };
        if c.refusal.is_none() || !s.peek().can_refuse() {
            return;
        }
        if let Some(reason) = c.refusal.take() {
            with_cx!(self, conn, cx, s.get().refuse(&mut cx, &reason));
            self.carry_out(conn);
        }
    }

    pub(crate) fn on_closed(&mut self, conn: ConnId) {
        if self.conns.contains_key(&conn) {
            self.forget_conn(conn);
        }
    }

    /// Lets the session handle what it has buffered, one unit at a time,
    /// pausing the connection when too much of its work is in flight.
    pub(crate) fn run_session(&mut self, conn: ConnId) {
        let max = self.config.conn_inflight_max;
        loop {
            if self.state != HaState::Live {
                return;
            }
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.paused {
                return;
            }
            if c.inflight >= max {
                c.paused = true;
                self.outputs
                    .push_back(Output::Conn(ConnRequest::PauseReading { conn }));
                return;
            }
            let Some(s) = c.session.as_mut() else {
                return;
            };
            let more = with_cx!(self, conn, cx, s.get().step(&mut cx));
            self.carry_out(conn);
            self.refuse_if_due(conn);
            self.pause_if_holding(conn);
            if !more {
                return;
            }
        }
    }

    /// Carries out what the connection's session asked for.
    pub(crate) fn carry_out(&mut self, conn: ConnId) {
        // Bounded: each round handles what the previous one pushed; a
        // refusal pushes an answer and stops the session reading, so this
        // settles within a few rounds.
        for _ in 0..64 {
            if self.actions.is_empty() {
                return;
            }
            let actions = std::mem::take(&mut self.actions);
            for a in actions {
                match a {
                    SessionAction::Op { tag, op } => {
                        if let Err(e) = self.execute(conn, tag, op) {
                            if let Some(s) =
                                self.conns.get_mut(&conn).and_then(|c| c.session.as_mut())
                            {
                                with_cx!(self, conn, cx, s.get().completed(&mut cx, tag, Err(e)));
                                self.flush_pending.insert(conn);
                            }
                        }
                    }
                    SessionAction::Send(bytes) => self.send_bytes(conn, bytes),
                    SessionAction::SendInTurn { bytes, close } => {
                        self.submit(Vec::new(), Work::SendInTurn { conn, bytes, close });
                    }
                    SessionAction::Close => self.close_conn(conn),
                    SessionAction::ClientError(message) => {
                        self.event(super::events::Event::ClientError { conn, message })
                    }
                    SessionAction::Login { user, password } => {
                        self.begin_login(conn, user, password)
                    }
                }
            }
        }
        debug_assert!(self.actions.is_empty(), "session actions did not settle");
        self.actions.clear();
    }

    /// A reading of the journal's disk: stop or resume producers.
    pub(crate) fn on_disk(&mut self, usage: DiskUsage) {
        let change = self.admission.on_disk(
            usage,
            self.config.disk_usage_max_permille,
            self.config.address_full_policy,
        );
        match change {
            Change::None => {}
            Change::Full(why) => self.event(Event::DiskFull { why }),
            Change::Room => {
                self.event(Event::DiskRoom {
                    used: Permille(usage.permille()),
                    max: Permille(self.config.disk_usage_max_permille.min(1000)),
                });
                self.resume_producers();
            }
        }
    }

    /// After every input: the messages held against `--max-memory-bytes`.
    pub(crate) fn check_memory(&mut self) {
        let (held, max) = (self.broker.bytes_held(), self.config.memory_max_bytes);
        match self
            .admission
            .on_memory(held, max, self.config.address_full_policy)
        {
            Change::None => {}
            Change::Full(why) => self.event(Event::MemoryFull { why }),
            Change::Room => {
                self.event(Event::MemoryRoom { held, max });
                self.resume_producers();
            }
        }
    }

    /// A limit cleared: if none stops producers any more, they go on.
    fn resume_producers(&mut self) {
        if self.admission.full().is_some() {
            return;
        }
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in ids {
            if let Some(s) = self.conns.get_mut(&conn).and_then(|c| c.session.as_mut()) {
                with_cx!(self, conn, cx, s.get().producers_resumed(&mut cx));
                self.flush_pending.insert(conn);
                self.carry_out(conn);
            }
        }
        self.resume_readers();
    }

    /// Stops reading a connection whose session holds a send back until
    /// producers may go on.
    fn pause_if_holding(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.paused && c.session.as_ref().is_some_and(|s| s.peek().holding()) {
            c.paused = true;
            self.counters.sends_held += 1;
            self.outputs
                .push_back(Output::Conn(ConnRequest::PauseReading { conn }));
        }
    }

    /// Lets paused connections read again once their work has drained
    /// (and no send of theirs waits for room).
    pub(crate) fn resume_readers(&mut self) {
        let low = self.config.conn_inflight_max / 2;
        let ready: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.paused
                    && c.inflight <= low
                    && !c.session.as_ref().is_some_and(|s| s.peek().holding())
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in ready {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.paused = false;
            }
            self.outputs
                .push_back(Output::Conn(ConnRequest::ResumeReading { conn }));
            self.run_session(conn);
        }
    }

    /// Completion of a tagged operation, in pipeline order.
    pub(crate) fn complete_op(
        &mut self,
        conn: ConnId,
        tag: u64,
        result: Result<(), super::ops::OpError>,
    ) {
        if let Some(s) = self.conns.get_mut(&conn).and_then(|c| c.session.as_mut()) {
            with_cx!(self, conn, cx, s.get().completed(&mut cx, tag, result));
            self.flush_pending.insert(conn);
            self.carry_out(conn);
        }
    }

    /// Lets the sessions that heard completions during this input write
    /// what they held back (AMQP: one disposition range for a whole group
    /// commit instead of a frame per message).
    pub(crate) fn flush_sessions(&mut self) {
        for conn in std::mem::take(&mut self.flush_pending) {
            if let Some(s) = self.conns.get_mut(&conn).and_then(|c| c.session.as_mut()) {
                with_cx!(self, conn, cx, s.get().flush(&mut cx));
                self.carry_out(conn);
            }
        }
    }

    pub(crate) fn close_conn(&mut self, conn: ConnId) {
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
        self.principals.remove(&conn);
        self.logins.remove(&conn);
        let mut back: Vec<RefKey> = Vec::new();
        for (_, tx) in c.txs {
            back.extend(tx.acks);
        }
        let mut dead = self.broker.requeue(&back);
        dead.extend(self.broker.connection_closed(conn));
        self.dead_letter_now(conn, dead);
    }

    /// Journals the dead-lettering of settling references (if any).
    pub(crate) fn dead_letter_now(&mut self, conn: ConnId, dead: Vec<RefKey>) {
        if dead.is_empty() {
            return;
        }
        let (entries, moves) = self.dead_letter(&dead);
        self.submit(
            entries,
            Work::Op {
                conn,
                tag: None,
                effects: Effects {
                    moves,
                    ..Effects::default()
                },
            },
        );
    }

    pub(crate) fn send_bytes(&mut self, conn: ConnId, bytes: impl Into<WireBytes>) {
        let bytes = bytes.into();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Some(s) = c.session.as_mut() {
            s.get().sent(self.now);
        }
        self.broker.charge(conn, bytes.len());
        self.outputs
            .push_back(Output::Conn(ConnRequest::Send { conn, bytes }));
    }

    /// Hands ready messages to consumers, encoded by their sessions.
    pub(crate) fn dispatch(&mut self) {
        let early_ack = self.bug(PlantedBug::RemoveBeforeAckDurable);
        let conns = &mut self.conns;
        let outputs = &mut self.outputs;
        let config = &self.config;
        let housekeeping = &mut self.housekeeping;
        let volatile = &mut self.housekeeping_volatile;
        let now = self.now;
        self.broker.dispatch(now, &mut |d| {
            let Some(s) = conns.get_mut(&d.conn).and_then(|c| c.session.as_mut()) else {
                return 0;
            };
            let bytes = s.get().deliver(now, config, &d);
            let n = bytes.len();
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
        for (conn, sub_id) in self.broker.take_drained() {
            if let Some(s) = self.conns.get_mut(&conn).and_then(|c| c.session.as_mut()) {
                with_cx!(self, conn, cx, s.get().drained(&mut cx, &sub_id));
                self.carry_out(conn);
            }
        }
    }

    /// Connect timeouts, heart-beats out, and silent peers.
    pub(crate) fn tick_sessions(&mut self) {
        let now = self.now;
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in ids {
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            match c.session.as_mut() {
                None => {
                    if now >= c.opened_at + self.config.connect_timeout_ms {
                        debug!(%conn, "no protocol header in time");
                        self.close_conn(conn);
                    }
                }
                Some(s) => {
                    with_cx!(self, conn, cx, s.get().tick(&mut cx));
                    self.carry_out(conn);
                }
            }
        }
    }
}
