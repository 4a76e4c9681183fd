//! The AMQP adapter: one client connection's AMQP state machine
//! ([`Connection`]) glued to the node's protocol-neutral operations.
//!
//! - A producer link's transfers become sends; an unsettled one is
//!   answered `accepted` only once the node reports it durable (the same
//!   contract as a STOMP RECEIPT).
//! - A consumer link is a subscription with credit; the client's
//!   dispositions settle deliveries (accepted, released, modified,
//!   rejected), pre-settled links are auto-acknowledged.
//! - The coordinator link's declare and discharge are transactions: a
//!   commit is one atomic journal batch.
//!
//! Input is decoded as it arrives; the events it yields are handled one
//! per [`ProtocolSession::step`], so the node's backpressure applies.

use crate::node::Gate;
use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use tracing::debug;

use super::convert::{from_neutral, to_neutral};
use super::links::{routing_of_jms_dest, LinkKind, PRODUCER_CREDIT};
use crate::broker::Delivery;
use crate::chunk_map::ChunkMap;
use crate::message::Routing;
use crate::node::{
    NodeConfig, Op, OpError, Outcome, ProtocolSession, Refusal, SessionAction, SessionCx, WireBytes,
};
use crate::protocol::amqp::connection::{
    AttachAnswer, CloseReason, Connection, ConnectionConfig, Event, Input, LinkId, Outgoing,
    Output, Received,
};
use crate::protocol::amqp::jms;
use crate::protocol::amqp::{AmqpError, Body, Condition, DeliveryState, Message, TxnRequest};
use crate::Millis;

/// What a completion of one of our operations finishes.
pub(super) enum Waiting {
    /// A transfer to answer (if unsettled) once durable.
    Send {
        link: LinkId,
        delivery_id: u32,
        settled: bool,
        txn: Option<Bytes>,
    },
    /// An attach to accept once its subscription (or node) exists.
    Attach {
        link: LinkId,
        answer: Box<AttachAnswer>,
        kind: LinkKind,
    },
    Declare {
        link: LinkId,
        delivery_id: u32,
        txn_id: Bytes,
    },
    Discharge {
        link: LinkId,
        delivery_id: u32,
    },
    /// Nothing to say (settlements, flows, unsubscribes).
    Quiet,
}

/// One AMQP client connection.
pub struct AmqpSession {
    pub(super) conn: Connection,
    /// Events (and a disconnect) from the connection, handled one per step.
    pub(super) events: VecDeque<Output>,
    pub(super) container_id: String,
    pub(super) links: BTreeMap<LinkId, LinkKind>,
    /// Subscription id -> its link.
    pub(super) subs: BTreeMap<String, LinkId>,
    /// Operations with the node, by tag (given in order, finished mostly
    /// in order: a `ChunkMap`, cheaper than a B-tree at both ends).
    pub(super) waiting: ChunkMap<u64, Waiting>,
    pub(super) next_tag: u64,
    /// Deliveries sent and not settled: (link, delivery id) -> ack number.
    pub(super) unsettled: ChunkMap<(LinkId, u32), u64>,
    /// Open transactions: txn-id -> the node's name for it.
    pub(super) txs: BTreeMap<Bytes, String>,
    pub(super) next_tx: u64,
    pub(super) next_temporary: u64,
    pub(super) closed: bool,
    /// The peer's open arrived.
    pub(super) opened: bool,
    /// A SASL login is with the node.
    pub(super) logging_in: bool,
}

impl AmqpSession {
    pub fn new(config: ConnectionConfig) -> AmqpSession {
        AmqpSession {
            conn: Connection::new(config),
            events: VecDeque::new(),
            container_id: String::new(),
            links: BTreeMap::new(),
            subs: BTreeMap::new(),
            waiting: ChunkMap::new(),
            next_tag: 1,
            unsettled: ChunkMap::new(),
            txs: BTreeMap::new(),
            next_tx: 1,
            next_temporary: 1,
            closed: false,
            opened: false,
            logging_in: false,
        }
    }

    /// Moves the connection's output along: bytes go out now (in the order
    /// the connection made them), events wait for `step`. The pieces of one
    /// run of bytes (a transfer's large body comes apart) leave as one send.
    pub(super) fn pump(&mut self, cx: &mut SessionCx<'_>) {
        let mut run = WireBytes::default();
        while let Some(out) = self.conn.poll_output() {
            match out {
                Output::Transmit(b) => run.push(b),
                other => {
                    if !run.is_empty() {
                        cx.push(SessionAction::Send(std::mem::take(&mut run)));
                    }
                    self.events.push_back(other)
                }
            }
        }
        if !run.is_empty() {
            cx.push(SessionAction::Send(run));
        }
    }

    /// Handles every queued event (for calls outside the read path).
    pub(super) fn drain_events(&mut self, cx: &mut SessionCx<'_>) {
        self.pump(cx);
        while let Some(e) = self.events.pop_front() {
            self.on_output(cx, e);
            self.pump(cx);
        }
    }

    pub(super) fn op(&mut self, cx: &mut SessionCx<'_>, op: Op, then: Waiting) {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.waiting.insert(tag, then);
        cx.push(SessionAction::Op { tag, op });
    }

    fn on_output(&mut self, cx: &mut SessionCx<'_>, out: Output) {
        match out {
            Output::Transmit(b) => cx.push(SessionAction::Send(b.into())),
            Output::Disconnect => {
                self.closed = true;
                cx.push(SessionAction::Close);
            }
            Output::Event(e) => self.on_event(cx, e),
        }
    }

    fn on_event(&mut self, cx: &mut SessionCx<'_>, e: Event) {
        match e {
            Event::SaslAuth(auth) => self.on_sasl(cx, auth),
            Event::Opened(open) => {
                self.opened = true;
                self.container_id = open.container_id
            }
            Event::SessionBegun(_) | Event::SessionEnded { .. } | Event::Aborted { .. } => {}
            Event::AttachRequested(req) => self.on_attach(cx, *req),
            Event::Credit {
                link,
                credit,
                drain,
            } => {
                if let Some(LinkKind::Consumer { sub_id, .. }) = self.links.get(&link) {
                    let sub_id = sub_id.clone();
                    // The link's credit now, not when the flow came: events
                    // may wait (a draining node ticks them through later)
                    // while deliveries go on using up the credit.
                    let credit = self.conn.credit(link).unwrap_or(credit);
                    self.op(
                        cx,
                        Op::Flow {
                            sub_id,
                            credit,
                            drain,
                        },
                        Waiting::Quiet,
                    );
                }
            }
            Event::Received(r) => self.on_received(cx, r),
            Event::Disposition {
                link,
                delivery_id,
                state,
                ..
            } => self.on_disposition(cx, link, delivery_id, state),
            Event::PeerSettled { .. } => {}
            Event::LinkDetached { link, closed, .. } => self.on_detached(cx, link, closed),
            Event::Closed(reason) => {
                if let CloseReason::Protocol(err) = &reason {
                    cx.push(SessionAction::ClientError(
                        err.description
                            .clone()
                            .unwrap_or_else(|| err.condition.as_str().to_owned()),
                    ));
                }
                debug!(?reason, "AMQP connection closed");
            }
        }
    }

    fn on_received(&mut self, cx: &mut SessionCx<'_>, r: Received) {
        let Some(kind) = self.links.get(&r.link).cloned() else {
            return;
        };
        let txn = match &r.state {
            Some(DeliveryState::Transactional { txn_id, .. }) => Some(txn_id.clone()),
            _ => None,
        };
        let decoded = Message::decode(r.payload, &Default::default());
        match kind {
            LinkKind::Coordinator => self.on_coordinator(cx, r.link, r.delivery_id, decoded),
            LinkKind::Producer { address, routing } => {
                // Keep the producer going, unless producers are held back
                // (it gets credit again when they may go on).
                if cx.gate != Gate::Block
                    && self
                        .conn
                        .credit(r.link)
                        .is_some_and(|c| c <= PRODUCER_CREDIT / 2)
                {
                    let _ = self.conn.grant_credit(r.link, PRODUCER_CREDIT, false);
                }
                let m = match decoded {
                    Ok(m) => m,
                    Err(e) => {
                        self.reject(
                            r.link,
                            r.delivery_id,
                            r.settled,
                            Condition::DecodeError,
                            e.to_string(),
                        );
                        return;
                    }
                };
                let address = address.or_else(|| m.properties.as_ref().and_then(|p| p.to.clone()));
                let Some(address) = address else {
                    self.reject(
                        r.link,
                        r.delivery_id,
                        r.settled,
                        Condition::InvalidField,
                        "a message on the anonymous relay needs a `to` address".into(),
                    );
                    return;
                };
                let routing = routing
                    .or_else(|| {
                        m.message_annotation(jms::JMS_DEST).and_then(|v| match v {
                            crate::protocol::amqp::Value::Byte(b) => routing_of_jms_dest(*b),
                            _ => None,
                        })
                    })
                    .or_else(|| cx.broker.address_routing(&address))
                    .unwrap_or(Routing::Anycast);
                let message = to_neutral(m, address, routing, cx.now);
                let tx = match &txn {
                    None => None,
                    Some(id) => match self.txs.get(id) {
                        Some(name) => Some(name.clone()),
                        None => {
                            self.reject(
                                r.link,
                                r.delivery_id,
                                r.settled,
                                Condition::TransactionUnknownId,
                                "unknown transaction".into(),
                            );
                            return;
                        }
                    },
                };
                #[cfg(feature = "planted-bugs")]
                if cx.config.planted_bug == Some(crate::node::PlantedBug::AmqpAcceptBeforeDurable)
                    && !r.settled
                    && txn.is_none()
                {
                    // Planted bug: `accepted` before the journal says durable.
                    let _ = self
                        .conn
                        .settle(r.link, r.delivery_id, DeliveryState::Accepted);
                }
                self.op(
                    cx,
                    Op::Send { message, tx },
                    Waiting::Send {
                        link: r.link,
                        delivery_id: r.delivery_id,
                        settled: r.settled,
                        txn,
                    },
                );
            }
            LinkKind::Consumer { .. } | LinkKind::Lookup { .. } => {}
        }
    }

    fn reject(
        &mut self,
        link: LinkId,
        delivery_id: u32,
        settled: bool,
        c: Condition,
        text: String,
    ) {
        if !settled {
            let _ = self.conn.settle(
                link,
                delivery_id,
                DeliveryState::Rejected {
                    error: Some(AmqpError::new(c, text)),
                },
            );
        }
    }

    fn on_coordinator(
        &mut self,
        cx: &mut SessionCx<'_>,
        link: LinkId,
        delivery_id: u32,
        decoded: Result<Message, crate::protocol::amqp::CodecError>,
    ) {
        let request = decoded.ok().and_then(|m| match m.body {
            Body::Value(v) => TxnRequest::from_value(v).ok(),
            _ => None,
        });
        match request {
            Some(TxnRequest::Declare { .. }) => {
                let n = self.next_tx;
                self.next_tx += 1;
                let txn_id = Bytes::copy_from_slice(&n.to_be_bytes());
                let name = format!("amqp-tx-{n}");
                self.txs.insert(txn_id.clone(), name.clone());
                self.op(
                    cx,
                    Op::Begin { tx: name },
                    Waiting::Declare {
                        link,
                        delivery_id,
                        txn_id,
                    },
                );
            }
            Some(TxnRequest::Discharge { txn_id, fail }) => {
                let Some(name) = self.txs.remove(&txn_id) else {
                    self.reject(
                        link,
                        delivery_id,
                        false,
                        Condition::TransactionUnknownId,
                        "unknown transaction".into(),
                    );
                    return;
                };
                let op = if fail {
                    Op::Abort { tx: name }
                } else {
                    Op::Commit { tx: name }
                };
                #[cfg(feature = "planted-bugs")]
                if cx.config.planted_bug
                    == Some(crate::node::PlantedBug::AmqpDischargeBeforeDurable)
                    && !fail
                {
                    // Planted bug: the commit answered before it is durable.
                    let _ = self.conn.settle(link, delivery_id, DeliveryState::Accepted);
                }
                self.op(cx, op, Waiting::Discharge { link, delivery_id });
            }
            None => self.reject(
                link,
                delivery_id,
                false,
                Condition::DecodeError,
                "the coordinator takes declare and discharge".into(),
            ),
        }
    }

    fn on_disposition(
        &mut self,
        cx: &mut SessionCx<'_>,
        link: LinkId,
        delivery_id: u32,
        state: Option<DeliveryState>,
    ) {
        let Some(state) = state else { return };
        let Some(ack) = self.unsettled.remove(&(link, delivery_id)) else {
            return;
        };
        let (outcome, tx) = match state {
            DeliveryState::Transactional { txn_id, outcome } => {
                let tx = self.txs.get(&txn_id).cloned();
                (outcome.map_or(DeliveryState::Accepted, |o| *o), tx)
            }
            other => (other, None),
        };
        let outcome = match outcome {
            DeliveryState::Accepted => Outcome::Accepted,
            DeliveryState::Released => Outcome::Release,
            DeliveryState::Rejected { .. } => Outcome::Reject,
            DeliveryState::Modified {
                undeliverable_here: true,
                ..
            } => Outcome::Reject,
            DeliveryState::Modified {
                delivery_failed, ..
            } => {
                if delivery_failed {
                    Outcome::Requeue
                } else {
                    Outcome::Release
                }
            }
            // Not an outcome: keep waiting for one.
            _ => {
                self.unsettled.insert((link, delivery_id), ack);
                return;
            }
        };
        self.op(cx, Op::Settle { ack, outcome, tx }, Waiting::Quiet);
    }

    fn on_detached(&mut self, cx: &mut SessionCx<'_>, link: LinkId, closed: bool) {
        let Some(kind) = self.links.remove(&link) else {
            return;
        };
        self.unsettled.retain(|(l, _), _| *l != link);
        match kind {
            LinkKind::Consumer { sub_id, durable } => {
                self.subs.remove(&sub_id);
                let durable = durable.filter(|_| closed);
                self.op(
                    cx,
                    Op::Unsubscribe {
                        sub_id: Some(sub_id),
                        durable,
                    },
                    Waiting::Quiet,
                );
            }
            LinkKind::Lookup { durable } if closed => {
                self.op(
                    cx,
                    Op::Unsubscribe {
                        sub_id: None,
                        durable: Some(durable),
                    },
                    Waiting::Quiet,
                );
            }
            _ => {}
        }
    }

    /// Answers a finished operation (`blocked`: producers are held back).
    fn finish(&mut self, blocked: bool, waiting: Waiting, result: Result<(), OpError>) {
        match (waiting, result) {
            (Waiting::Quiet, _) => {}
            (
                Waiting::Send {
                    link,
                    delivery_id,
                    settled,
                    txn,
                },
                Ok(()),
            ) => {
                if !settled {
                    let state = match txn {
                        Some(txn_id) => DeliveryState::Transactional {
                            txn_id,
                            outcome: Some(Box::new(DeliveryState::Accepted)),
                        },
                        None => DeliveryState::Accepted,
                    };
                    let _ = self.conn.settle(link, delivery_id, state);
                }
            }
            (
                Waiting::Send {
                    link,
                    delivery_id,
                    settled,
                    ..
                },
                Err(e),
            ) => self.reject(link, delivery_id, settled, condition_of(&e), e.to_string()),
            (Waiting::Attach { link, answer, kind }, Ok(())) => {
                if let LinkKind::Consumer { sub_id, .. } = &kind {
                    self.subs.insert(sub_id.clone(), link);
                }
                self.accept_now(blocked, link, *answer, kind);
            }
            (Waiting::Attach { link, .. }, Err(e)) => {
                self.refuse_attach(link, condition_of(&e), e.to_string())
            }
            (
                Waiting::Declare {
                    link,
                    delivery_id,
                    txn_id,
                },
                Ok(()),
            ) => {
                let _ = self
                    .conn
                    .settle(link, delivery_id, DeliveryState::Declared { txn_id });
            }
            (
                Waiting::Declare {
                    link,
                    delivery_id,
                    txn_id,
                },
                Err(e),
            ) => {
                self.txs.remove(&txn_id);
                self.reject(link, delivery_id, false, condition_of(&e), e.to_string());
            }
            (Waiting::Discharge { link, delivery_id }, Ok(())) => {
                let _ = self.conn.settle(link, delivery_id, DeliveryState::Accepted);
            }
            (Waiting::Discharge { link, delivery_id }, Err(e)) => self.reject(
                link,
                delivery_id,
                false,
                Condition::TransactionRollback,
                e.to_string(),
            ),
        }
    }
}

fn condition_of(e: &OpError) -> Condition {
    match e {
        OpError::UnknownTransaction(_) => Condition::TransactionUnknownId,
        OpError::TooManyTransactions(_) | OpError::TransactionTooLarge { .. } => {
            Condition::ResourceLimitExceeded
        }
        OpError::Send(_) => Condition::ResourceLimitExceeded,
        OpError::Subscribe(crate::broker::SubscribeError::DurableInUse(_)) => {
            Condition::ResourceLocked
        }
        OpError::NoQueue(_) | OpError::NoSubscription(_) => Condition::NotFound,
        OpError::AddressInUse(_) => Condition::ResourceLocked,
        OpError::Denied(_) => Condition::UnauthorizedAccess,
        OpError::Full { .. } => Condition::ResourceLimitExceeded,
        _ => Condition::InvalidField,
    }
}

impl ProtocolSession for AmqpSession {
    fn receive(&mut self, cx: &mut SessionCx<'_>, bytes: Bytes) {
        self.conn.handle(cx.now, Input::Bytes(bytes));
        self.pump(cx);
    }

    fn step(&mut self, cx: &mut SessionCx<'_>) -> bool {
        if self.closed {
            return false;
        }
        let Some(e) = self.events.pop_front() else {
            return false;
        };
        self.on_output(cx, e);
        self.pump(cx);
        !self.events.is_empty() && !self.closed
    }

    fn completed(&mut self, cx: &mut SessionCx<'_>, tag: u64, result: Result<(), OpError>) {
        // The frames wait for `flush`: the settlements of one group commit
        // leave as one disposition range.
        if let Some(w) = self.waiting.remove(&tag) {
            self.finish(cx.gate == Gate::Block, w, result);
        }
    }

    fn flush(&mut self, cx: &mut SessionCx<'_>) {
        self.drain_events(cx);
    }

    fn deliver(&mut self, _now: Millis, _config: &NodeConfig, d: &Delivery) -> WireBytes {
        let Some(&link) = self.subs.get(&d.sub_id) else {
            return WireBytes::default();
        };
        let m = from_neutral(&d.message, d.deliveries, d.expired);
        let tag = d.ack.unwrap_or(d.message_id.seq).to_be_bytes();
        let sent = self.conn.send(
            link,
            Outgoing {
                tag: Bytes::copy_from_slice(&tag),
                payload: m.to_wire(),
                settled: d.ack.is_none(),
                message_format: 0,
            },
        );
        match sent {
            Ok(delivery_id) => {
                if let Some(ack) = d.ack {
                    self.unsettled.insert((link, delivery_id), ack);
                }
            }
            // The broker keeps credit in step with the link's, so this is
            // a bug; the message stays with this consumer until it leaves.
            Err(e) => debug_assert!(false, "AMQP send refused: {e}"),
        }
        // Usually one buffer, or three when the body comes apart (the
        // frame's start, the body as stored, the rest): handed on as they
        // are, copied only beyond three.
        let mut wire = WireBytes::default();
        while let Some(o) = self.conn.poll_output() {
            match o {
                Output::Transmit(b) => wire.push(b),
                other => self.events.push_back(other),
            }
        }
        wire
    }

    fn tick(&mut self, cx: &mut SessionCx<'_>) {
        self.conn.handle(cx.now, Input::Tick);
        self.drain_events(cx);
    }

    fn deadline(&self, _config: &NodeConfig) -> Option<Millis> {
        self.conn.next_deadline()
    }

    fn sent(&mut self, _now: Millis) {}

    fn refuse(&mut self, cx: &mut SessionCx<'_>, why: &Refusal) {
        let condition = match why {
            Refusal::NotLive => Condition::ConnectionForced,
            Refusal::TooMany(_) => Condition::ResourceLimitExceeded,
            Refusal::Unauthorized(_) => Condition::UnauthorizedAccess,
        };
        let message = why.message();
        self.conn
            .close(Some(AmqpError::new(condition, message.to_owned())));
        self.pump(cx);
        cx.push(SessionAction::ClientError(message.to_owned()));
        self.closed = true;
        cx.push(SessionAction::SendInTurn {
            bytes: Bytes::new(),
            close: true,
        });
    }

    fn producers_resumed(&mut self, cx: &mut SessionCx<'_>) {
        let producers: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, k)| matches!(k, LinkKind::Producer { .. }))
            .map(|(l, _)| *l)
            .collect();
        for link in producers {
            if self
                .conn
                .credit(link)
                .is_some_and(|c| c <= PRODUCER_CREDIT / 2)
            {
                let _ = self.conn.grant_credit(link, PRODUCER_CREDIT, false);
            }
        }
        self.pump(cx);
    }

    fn login_checked(&mut self, cx: &mut SessionCx<'_>, ok: bool) {
        if std::mem::take(&mut self.logging_in) {
            let _ = self.conn.sasl_outcome(ok);
            self.pump(cx);
        }
    }

    fn established(&self) -> bool {
        self.opened
    }

    fn can_refuse(&self) -> bool {
        self.opened
    }

    fn drained(&mut self, cx: &mut SessionCx<'_>, sub_id: &str) {
        if let Some(&link) = self.subs.get(sub_id) {
            let _ = self.conn.drain_complete(link);
            self.drain_events(cx);
        }
    }
}
