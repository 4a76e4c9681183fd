//! The AMQP 1.0 side of a simulated client, built from the core's codec:
//! SASL ANONYMOUS, open, one session, and its links. A producer sends
//! durable messages unsettled on a sender link and counts one
//! acknowledged only when the broker settles it `accepted`; a
//! transactional producer declares a transaction on the coordinator
//! link, sends its messages in it and counts them acknowledged when the
//! discharge is accepted. A consumer gives link credit (topped up at half)
//! and settles: accepted, released or modified one by one, accepted for a
//! range of deliveries, or accepted inside coordinator transactions;
//! pre-settled deliveries need nothing (at most once).

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use halyard_core::protocol::amqp::{
    decode_amqp_body, decode_sasl_body, AttachTarget, DecodeLimits, DeliveryState, FrameDecoder,
    Item, Performative, Role, SaslCode, SaslFrame, Transfer, TxnRequest, EMPTY_FRAME,
};
use halyard_core::Millis;

use super::amqp_frames::{self as frames, FlowState, MAX_FRAME_BYTES};
use super::kinds::{AckStyle, Action, Incoming, Kind, Settle, WireEvent};

/// Our link handles: the producer's or consumer's link, and the
/// coordinator's.
const MAIN: u32 = 0;
const COORDINATOR: u32 = 1;
/// Credit a consumer gives, topped up when half is used.
const CONSUMER_CREDIT: u32 = 20;
/// Accepts per transaction of a transactional consumer, and deliveries
/// per range disposition of a cumulative one.
const SETTLES_PER_BATCH: usize = 3;
/// Most bytes of input waiting to be decoded.
const PENDING_INPUT_BYTES_MAX: usize = 16 * 1024 * 1024;

/// What one of our unsettled transfers is.
#[derive(Clone, Debug)]
enum Purpose {
    Message {
        seq: u64,
    },
    /// A message inside transaction `chunk`: its own outcome is provisional.
    TransactionalMessage,
    Declare {
        chunk: u64,
    },
    Discharge {
        chunk: u64,
    },
    ConsumerDeclare,
    ConsumerDischarge {
        tokens: Vec<u64>,
    },
}

/// A transfer waiting for link credit.
struct Held {
    handle: u32,
    payload: Bytes,
    state: Option<DeliveryState>,
    purpose: Purpose,
}

/// One of our sender links as we know it.
#[derive(Default)]
struct SenderLink {
    attached: bool,
    delivery_count: u32,
    credit: u32,
}

/// A transactional consumer's acceptances and their transaction.
enum ConsumerTransaction {
    Idle,
    /// Declared, not answered yet: deliveries to accept once it is.
    Declaring {
        tokens: Vec<u64>,
    },
    Open {
        txn_id: Bytes,
        tokens: Vec<u64>,
    },
}

pub struct AmqpWire {
    name: String,
    kind: Kind,
    decoder: FrameDecoder,
    /// Send an empty frame this often (half the broker's idle time-out).
    keepalive_ms: Option<u64>,
    keepalive_at: Millis,
    next_outgoing_id: u32,
    next_delivery_id: u32,
    next_incoming_id: u32,
    /// The broker's handles -> ours.
    handles: BTreeMap<u32, u32>,
    main: SenderLink,
    coordinator: SenderLink,
    /// Consumer, once its link is attached: the broker's delivery-count as
    /// we know it, and the credit left.
    receiving: Option<(u32, u32)>,
    outstanding: BTreeMap<u32, Purpose>,
    held: VecDeque<Held>,
    /// Producer transactions: chunk -> its seqs.
    chunks: BTreeMap<u64, Vec<u64>>,
    next_chunk: u64,
    consumer_transaction: ConsumerTransaction,
    /// Cumulative consumer: deliveries not settled yet.
    unsettled: Vec<u64>,
    /// A delivery whose transfer frames are still coming: its id and bytes.
    partial: Option<(u32, BytesMut)>,
    connected: bool,
}

impl AmqpWire {
    pub fn new(name: &str, kind: &Kind) -> AmqpWire {
        AmqpWire {
            name: name.to_string(),
            kind: kind.clone(),
            decoder: FrameDecoder::new(MAX_FRAME_BYTES, PENDING_INPUT_BYTES_MAX),
            keepalive_ms: None,
            keepalive_at: 0,
            next_outgoing_id: 0,
            next_delivery_id: 0,
            next_incoming_id: 0,
            handles: BTreeMap::new(),
            main: SenderLink::default(),
            coordinator: SenderLink::default(),
            receiving: None,
            outstanding: BTreeMap::new(),
            held: VecDeque::new(),
            chunks: BTreeMap::new(),
            next_chunk: 0,
            consumer_transaction: ConsumerTransaction::Idle,
            unsettled: Vec::new(),
            partial: None,
            connected: false,
        }
    }

    /// The connection is gone: everything on it is forgotten.
    pub fn reset(&mut self) {
        let (name, kind, next_chunk) = (
            std::mem::take(&mut self.name),
            self.kind.clone(),
            self.next_chunk,
        );
        *self = AmqpWire::new(&name, &kind);
        self.next_chunk = next_chunk;
    }

    fn transactional(&self) -> bool {
        matches!(
            self.kind,
            Kind::Producer {
                transaction_size: Some(_),
                ..
            } | Kind::Consumer {
                ack: AckStyle::Transactional,
                ..
            }
        )
    }

    fn link_name(&self, handle: u32) -> String {
        match (&self.kind, handle) {
            // Qpid JMS names a durable subscription's link after it.
            (
                Kind::Consumer {
                    durable: Some((_, subscription)),
                    ..
                },
                MAIN,
            ) => subscription.clone(),
            (_, MAIN) => format!("{}-link", self.name),
            _ => format!("{}-coordinator", self.name),
        }
    }

    /// The TCP connection was accepted: SASL first.
    pub fn greet(&mut self, out: &mut Vec<Action>, login: Option<&(String, String)>) {
        self.reset();
        out.push(Action::Send(match login {
            Some((user, pass)) => frames::sasl_plain(user, pass),
            None => frames::sasl_anonymous(),
        }));
    }

    /// After SASL: open, begin and the links, all at once.
    fn open(&mut self, out: &mut Vec<Action>) {
        // A durable subscriber's container id is its JMS client id.
        let container_id = match &self.kind {
            Kind::Consumer {
                durable: Some((client_id, _)),
                ..
            } => client_id.clone(),
            _ => self.name.clone(),
        };
        let mut b = BytesMut::from(&frames::open_and_begin(&container_id)[..]);
        let name = self.link_name(MAIN);
        match &self.kind {
            Kind::Producer { destination, .. } => {
                b.extend_from_slice(&frames::attach_producer(&name, MAIN, destination));
            }
            Kind::Consumer {
                destination,
                ack,
                durable,
                ..
            } => b.extend_from_slice(&frames::attach_consumer(
                &name,
                MAIN,
                destination,
                *ack == AckStyle::Auto,
                durable.is_some(),
            )),
        }
        if self.transactional() {
            let name = self.link_name(COORDINATOR);
            b.extend_from_slice(&frames::attach_coordinator(&name, COORDINATOR));
        }
        out.push(Action::Send(b.freeze()));
    }

    pub fn on_bytes(
        &mut self,
        now: Millis,
        bytes: &[u8],
        events: &mut Vec<WireEvent>,
        out: &mut Vec<Action>,
    ) {
        if let Err(e) = self.decoder.push(bytes) {
            events.push(WireEvent::Broken(format!("bad AMQP framing: {e}")));
            return;
        }
        loop {
            let item = match self.decoder.next_item() {
                Ok(Some(item)) => item,
                Ok(None) => return,
                Err(e) => {
                    events.push(WireEvent::Broken(format!("bad AMQP framing: {e}")));
                    return;
                }
            };
            let Item::Frame(f) = item else {
                continue; // the protocol headers echoed back
            };
            if f.body.is_empty() {
                continue; // the broker's keepalive
            }
            let limits = DecodeLimits::default();
            if f.sasl {
                match decode_sasl_body(f.body, &limits) {
                    Ok(SaslFrame::Outcome {
                        code: SaslCode::Ok, ..
                    }) => {
                        self.decoder.expect_header();
                        self.open(out);
                    }
                    Ok(SaslFrame::Outcome { code, .. }) => {
                        events.push(WireEvent::Broken(format!("SASL refused: {code:?}")));
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        events.push(WireEvent::Broken(format!("bad SASL frame: {e}")));
                        return;
                    }
                }
                continue;
            }
            match decode_amqp_body(f.body, &limits) {
                Ok((performative, payload)) => {
                    self.on_performative(now, performative, payload, events, out);
                }
                Err(e) => events.push(WireEvent::Broken(format!("bad AMQP frame: {e}"))),
            }
            if matches!(events.last(), Some(WireEvent::Broken(_))) {
                return;
            }
        }
    }

    fn on_performative(
        &mut self,
        now: Millis,
        performative: Performative,
        payload: Bytes,
        events: &mut Vec<WireEvent>,
        out: &mut Vec<Action>,
    ) {
        match performative {
            Performative::Open(open) => {
                self.keepalive_ms = open.idle_time_out.map(|t| u64::from(t / 2).max(1));
                if let Some(every) = self.keepalive_ms {
                    self.keepalive_at = now + every;
                    out.push(Action::Timer(self.keepalive_at));
                }
            }
            Performative::Begin(begin) => self.next_incoming_id = begin.next_outgoing_id,
            Performative::Attach(attach) => {
                let handle = if attach.name == self.link_name(MAIN) {
                    MAIN
                } else {
                    COORDINATOR
                };
                self.handles.insert(attach.handle, handle);
                // A refused link comes back without its terminus; its
                // detach says why.
                let refused = match attach.role {
                    Role::Receiver => attach.target.is_none(),
                    Role::Sender => attach.source.is_none(),
                };
                if refused {
                    return;
                }
                match (attach.role, handle) {
                    // Our receiver: we count from the broker's first delivery-count.
                    (Role::Sender, _) => {
                        self.receiving = Some((attach.initial_delivery_count.unwrap_or(0), 0));
                    }
                    (Role::Receiver, MAIN) => self.main.attached = true,
                    (Role::Receiver, _) => {
                        debug_assert!(matches!(attach.target, Some(AttachTarget::Coordinator(_))));
                        self.coordinator.attached = true;
                    }
                }
                self.maybe_connected(events, out);
            }
            Performative::Flow(flow) => {
                let Some(handle) = flow.handle.and_then(|h| self.handles.get(&h).copied()) else {
                    return;
                };
                if let (Some(count), Some(credit)) = (flow.delivery_count, flow.link_credit) {
                    // Counted from the broker's delivery-count, which lags
                    // ours by the transfers still on their way to it; none
                    // (not a wrapped-around lot) when we are past its limit.
                    let link = self.sender(handle);
                    let left = count.wrapping_add(credit).wrapping_sub(link.delivery_count);
                    link.credit = if left > u32::MAX / 2 { 0 } else { left };
                    self.flush_held(out);
                }
            }
            Performative::Transfer(t) => self.on_transfer(t, payload, events, out),
            Performative::Disposition(d) => {
                let last = d.last.unwrap_or(d.first);
                let mut id = d.first;
                loop {
                    if let Some(purpose) = self.outstanding.remove(&id) {
                        self.on_outcome(purpose, d.state.clone(), events, out);
                    }
                    if id == last {
                        break;
                    }
                    id = id.wrapping_add(1);
                }
            }
            Performative::Detach(detach) => {
                let why = detach
                    .error
                    .map_or("no error".to_string(), |e| format!("{e:?}"));
                events.push(WireEvent::Broken(format!("link detached: {why}")));
            }
            Performative::End { error } | Performative::Close { error } => {
                let why = error.map_or("no error".to_string(), |e| format!("{e:?}"));
                events.push(WireEvent::Broken(format!("closed by the broker: {why}")));
            }
        }
    }

    fn sender(&mut self, handle: u32) -> &mut SenderLink {
        if handle == MAIN {
            &mut self.main
        } else {
            &mut self.coordinator
        }
    }

    /// Every link is attached: the client may go on.
    fn maybe_connected(&mut self, events: &mut Vec<WireEvent>, out: &mut Vec<Action>) {
        let coordinator = !self.transactional() || self.coordinator.attached;
        let main = match self.kind {
            Kind::Producer { .. } => self.main.attached,
            Kind::Consumer { .. } => self.receiving.is_some(),
        };
        if self.connected || !coordinator || !main {
            return;
        }
        self.connected = true;
        events.push(WireEvent::Connected);
        if let Kind::Consumer { .. } = self.kind {
            let count = self.receiving.map_or(0, |(count, _)| count);
            self.receiving = Some((count, CONSUMER_CREDIT));
            self.send_flow(Some((count, CONSUMER_CREDIT)), out);
            events.push(WireEvent::Subscribed);
        }
    }

    fn send_flow(&self, link: Option<(u32, u32)>, out: &mut Vec<Action>) {
        out.push(Action::Send(frames::flow(&FlowState {
            next_incoming_id: self.next_incoming_id,
            next_outgoing_id: self.next_outgoing_id,
            link: link.map(|(count, credit)| (MAIN, count, credit)),
        })));
    }

    fn on_transfer(
        &mut self,
        t: Transfer,
        payload: Bytes,
        events: &mut Vec<WireEvent>,
        out: &mut Vec<Action>,
    ) {
        self.next_incoming_id = self.next_incoming_id.wrapping_add(1);
        if t.aborted {
            self.partial = None;
            return;
        }
        // A delivery in one frame (all of the simulated ones) is not copied.
        let (id, payload) = match self.partial.take() {
            Some((id, mut bytes)) => {
                bytes.extend_from_slice(&payload);
                if t.more {
                    self.partial = Some((id, bytes));
                    return;
                }
                (id, bytes.freeze())
            }
            None if t.more => {
                let id = t.delivery_id.unwrap_or_default();
                self.partial = Some((id, BytesMut::from(&payload[..])));
                return;
            }
            None => (t.delivery_id.unwrap_or_default(), payload),
        };
        let Some((received, credit)) = self.receiving.as_mut() else {
            return;
        };
        *received = received.wrapping_add(1);
        *credit = credit.saturating_sub(1);
        let (received, credit) = (*received, *credit);
        if credit <= CONSUMER_CREDIT / 2 {
            self.receiving = Some((received, CONSUMER_CREDIT));
            self.send_flow(Some((received, CONSUMER_CREDIT)), out);
        }
        let Some(m) = frames::read_message(payload) else {
            events.push(WireEvent::Note(format!("undecodable delivery {id}")));
            return;
        };
        events.push(WireEvent::Delivered(Incoming {
            producer: m.producer,
            seq: m.seq,
            origin: m.origin,
            message_id: String::new(),
            redelivered: m.redelivered,
            token: u64::from(id),
            ack_id: String::new(),
        }));
    }

    fn on_outcome(
        &mut self,
        purpose: Purpose,
        state: Option<DeliveryState>,
        events: &mut Vec<WireEvent>,
        out: &mut Vec<Action>,
    ) {
        match (purpose, state) {
            (Purpose::Message { seq }, Some(DeliveryState::Accepted)) => {
                events.push(WireEvent::Acknowledged(vec![seq]));
            }
            (Purpose::TransactionalMessage, Some(DeliveryState::Transactional { outcome, .. }))
                if outcome
                    .as_deref()
                    .is_none_or(|o| *o == DeliveryState::Accepted) => {}
            (Purpose::Declare { chunk }, Some(DeliveryState::Declared { txn_id })) => {
                self.send_in_transaction(chunk, txn_id, out);
            }
            (Purpose::Discharge { chunk }, Some(DeliveryState::Accepted)) => {
                let seqs = self.chunks.remove(&chunk).unwrap_or_default();
                events.push(WireEvent::Acknowledged(seqs));
            }
            (Purpose::ConsumerDeclare, Some(DeliveryState::Declared { txn_id })) => {
                let tokens = match std::mem::replace(
                    &mut self.consumer_transaction,
                    ConsumerTransaction::Idle,
                ) {
                    ConsumerTransaction::Declaring { tokens } => tokens,
                    _ => Vec::new(),
                };
                self.consumer_transaction = ConsumerTransaction::Open {
                    txn_id,
                    tokens: Vec::new(),
                };
                for token in tokens {
                    self.accept_in_transaction(token, out);
                }
            }
            (Purpose::ConsumerDischarge { tokens }, Some(DeliveryState::Accepted)) => {
                events.push(WireEvent::AcceptsCommitted(tokens));
            }
            (Purpose::ConsumerDischarge { .. }, state) => {
                events.push(WireEvent::Note(format!(
                    "acknowledgements rolled back: {state:?}"
                )));
            }
            (purpose, state) => {
                events.push(WireEvent::Broken(format!("{purpose:?} answered {state:?}")))
            }
        }
    }

    /// Sends `payload` on our link `handle`, or holds it until there is
    /// credit (behind anything already held, so transfers keep their order).
    fn transfer(
        &mut self,
        handle: u32,
        payload: Bytes,
        state: Option<DeliveryState>,
        purpose: Purpose,
        out: &mut Vec<Action>,
    ) {
        let held = Held {
            handle,
            payload,
            state,
            purpose,
        };
        if self.held.is_empty() && self.has_credit(handle) {
            self.emit(held, out);
        } else {
            self.held.push_back(held);
        }
    }

    fn has_credit(&mut self, handle: u32) -> bool {
        let link = self.sender(handle);
        link.attached && link.credit > 0
    }

    fn emit(&mut self, h: Held, out: &mut Vec<Action>) {
        let link = self.sender(h.handle);
        link.credit -= 1;
        link.delivery_count = link.delivery_count.wrapping_add(1);
        let id = self.next_delivery_id;
        self.next_delivery_id = id.wrapping_add(1);
        self.next_outgoing_id = self.next_outgoing_id.wrapping_add(1);
        self.outstanding.insert(id, h.purpose);
        out.push(Action::Send(frames::transfer(
            h.handle, id, h.state, &h.payload,
        )));
    }

    /// Sends what waited for credit, in order, while there is some.
    fn flush_held(&mut self, out: &mut Vec<Action>) {
        while let Some(handle) = self.held.front().map(|h| h.handle) {
            if !self.has_credit(handle) {
                return;
            }
            let h = self.held.pop_front().expect("a held transfer");
            self.emit(h, out);
        }
    }

    /// A producer's message `seq`.
    fn message(&self, seq: u64) -> Option<Bytes> {
        let Kind::Producer {
            destination,
            duplicate_ids,
            ..
        } = &self.kind
        else {
            return None;
        };
        Some(frames::message(
            &self.name,
            seq,
            destination,
            *duplicate_ids,
        ))
    }

    /// Sends `seqs`, each unsettled, or as one coordinator transaction.
    pub fn send(&mut self, seqs: &[u64], transaction: bool, out: &mut Vec<Action>) {
        if !transaction {
            for &seq in seqs {
                let Some(m) = self.message(seq) else {
                    return;
                };
                self.transfer(MAIN, m, None, Purpose::Message { seq }, out);
            }
            return;
        }
        let chunk = self.next_chunk;
        self.next_chunk += 1;
        self.chunks.insert(chunk, seqs.to_vec());
        let declare = frames::coordinator_request(&TxnRequest::Declare { global_id: None });
        self.transfer(COORDINATOR, declare, None, Purpose::Declare { chunk }, out);
    }

    /// Transaction `txn_id` of `chunk` is declared: its messages, then its commit.
    fn send_in_transaction(&mut self, chunk: u64, txn_id: Bytes, out: &mut Vec<Action>) {
        let Some(seqs) = self.chunks.get(&chunk) else {
            return;
        };
        let messages: Vec<Bytes> = seqs.iter().filter_map(|&seq| self.message(seq)).collect();
        for m in messages {
            let state = DeliveryState::Transactional {
                txn_id: txn_id.clone(),
                outcome: None,
            };
            self.transfer(MAIN, m, Some(state), Purpose::TransactionalMessage, out);
        }
        let discharge = frames::coordinator_request(&TxnRequest::Discharge {
            txn_id,
            fail: false,
        });
        self.transfer(
            COORDINATOR,
            discharge,
            None,
            Purpose::Discharge { chunk },
            out,
        );
    }

    /// Settles the delivery `token` (its delivery id) the consumer's way.
    pub fn settle(&mut self, token: u64, how: Settle, out: &mut Vec<Action>) {
        let Kind::Consumer { ack, .. } = &self.kind else {
            return;
        };
        let id = token as u32;
        match ack {
            AckStyle::Auto => {}
            AckStyle::Individual => {
                let state = match how {
                    Settle::Accept => DeliveryState::Accepted,
                    Settle::Release => DeliveryState::Released,
                    Settle::Requeue => DeliveryState::Modified {
                        delivery_failed: true,
                        undeliverable_here: false,
                        message_annotations: None,
                    },
                };
                out.push(Action::Send(frames::disposition(id, id, state)));
            }
            AckStyle::Cumulative => {
                self.unsettled.push(token);
                if self.unsettled.len() >= SETTLES_PER_BATCH {
                    self.settle_range(out);
                }
            }
            AckStyle::Transactional => match &mut self.consumer_transaction {
                ConsumerTransaction::Idle => {
                    self.consumer_transaction = ConsumerTransaction::Declaring {
                        tokens: vec![token],
                    };
                    let declare =
                        frames::coordinator_request(&TxnRequest::Declare { global_id: None });
                    self.transfer(COORDINATOR, declare, None, Purpose::ConsumerDeclare, out);
                }
                ConsumerTransaction::Declaring { tokens } => tokens.push(token),
                ConsumerTransaction::Open { .. } => self.accept_in_transaction(token, out),
            },
        }
    }

    /// One accepted disposition for the deliveries waiting, if their ids
    /// are consecutive (one receiving link: they are, on one connection).
    fn settle_range(&mut self, out: &mut Vec<Action>) {
        let ids: Vec<u32> = self.unsettled.drain(..).map(|t| t as u32).collect();
        let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
            return;
        };
        let consecutive = ids.windows(2).all(|w| w[1] == w[0].wrapping_add(1));
        if consecutive {
            out.push(Action::Send(frames::disposition(
                first,
                last,
                DeliveryState::Accepted,
            )));
        } else {
            for id in ids {
                out.push(Action::Send(frames::disposition(
                    id,
                    id,
                    DeliveryState::Accepted,
                )));
            }
        }
    }

    /// Accepts `token` in the open consumer transaction; commits it once it
    /// holds enough.
    fn accept_in_transaction(&mut self, token: u64, out: &mut Vec<Action>) {
        let ConsumerTransaction::Open { txn_id, tokens } = &mut self.consumer_transaction else {
            return;
        };
        let state = DeliveryState::Transactional {
            txn_id: txn_id.clone(),
            outcome: Some(Box::new(DeliveryState::Accepted)),
        };
        out.push(Action::Send(frames::disposition(
            token as u32,
            token as u32,
            state,
        )));
        tokens.push(token);
        if tokens.len() < SETTLES_PER_BATCH {
            return;
        }
        let (txn_id, tokens) = (txn_id.clone(), std::mem::take(tokens));
        self.consumer_transaction = ConsumerTransaction::Idle;
        let discharge = frames::coordinator_request(&TxnRequest::Discharge {
            txn_id,
            fail: false,
        });
        self.transfer(
            COORDINATOR,
            discharge,
            None,
            Purpose::ConsumerDischarge { tokens },
            out,
        );
    }

    /// Keeps the broker's idle time-out from closing the connection.
    pub fn on_timer(&mut self, now: Millis, out: &mut Vec<Action>) {
        let Some(every) = self.keepalive_ms else {
            return;
        };
        if now >= self.keepalive_at {
            out.push(Action::Send(Bytes::from_static(&EMPTY_FRAME)));
            self.keepalive_at = now + every;
            out.push(Action::Timer(self.keepalive_at));
        }
    }

    /// A producer with every message acknowledged says goodbye.
    pub fn goodbye(&mut self, out: &mut Vec<Action>) {
        out.push(Action::Send(frames::close()));
    }
}
