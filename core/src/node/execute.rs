//! Executing protocol-neutral operations: each becomes a journal batch and
//! the in-memory work that follows it, in the pipeline.

use std::sync::Arc;

use super::admission::Gate;
use super::node::Node;
use super::ops::{Op, OpError, Outcome, SubscribeOp, SubscribeTarget};
use super::work::{Effects, VolatileSend, Work};
use crate::bridge::BridgeMode;
use crate::broker::{ConsumerFilter, Selector, Settled};
use crate::ids::ConnId;
use crate::journal::{Entry, Key, QueueKind, Record, Routing};
use crate::message::Message;

impl Node {
    /// Executes one operation of `conn`'s session. `Err` means nothing of it
    /// happened; the session is told at once.
    pub(crate) fn execute(&mut self, conn: ConnId, tag: u64, op: Op) -> Result<(), OpError> {
        self.authorize_op(conn, &op)?;
        if let (Op::Send { message, .. }, Gate::Fail(why)) =
            (&op, self.admission.gate(&self.config))
        {
            self.counters.sends_refused_full += 1;
            return Err(OpError::Full {
                address: message.address.clone(),
                why: why.to_string(),
            });
        }
        match op {
            Op::Send { message, tx: None } => {
                let mut entries = Vec::new();
                let mut effects = Effects::default();
                self.plan_one_send(message, Some(conn), &mut entries, &mut effects)?;
                effects.send = true;
                self.submit(
                    entries,
                    Work::Op {
                        conn,
                        tag: Some(tag),
                        effects,
                    },
                );
                Ok(())
            }
            Op::Send {
                message,
                tx: Some(tx),
            } => self.tx_send(conn, tag, &tx, message),
            Op::Subscribe(req) => self.plan_subscribe(conn, tag, req),
            Op::Unsubscribe { sub_id, durable } => {
                let returned = sub_id
                    .as_deref()
                    .and_then(|id| self.broker.unsubscribe(conn, id));
                let mut entries = Vec::new();
                if let Some(d) = durable {
                    let qname = d.queue_name();
                    if self.broker.queue_by_name(&qname).is_some() {
                        entries.push(Entry::Tombstone(Key::Queue(qname)));
                    }
                } else if returned.is_none() {
                    return Err(OpError::NoSubscription(sub_id.unwrap_or_default()));
                }
                let (dl_entries, moves) = self.dead_letter(&returned.unwrap_or_default());
                entries.extend(dl_entries);
                self.submit(
                    entries,
                    Work::Op {
                        conn,
                        tag: Some(tag),
                        effects: Effects {
                            moves,
                            ..Effects::default()
                        },
                    },
                );
                Ok(())
            }
            Op::Settle {
                ack,
                outcome: Outcome::Accepted,
                tx: Some(tx),
            } => self.tx_settle(conn, tag, &tx, ack),
            Op::Settle { ack, outcome, .. } => {
                let keys = self.broker.settle(conn, ack)?;
                let (entries, effects) = match outcome {
                    Outcome::Accepted => {
                        self.broker.count_settled(&keys, Settled::Acknowledged);
                        let entries = self.broker.settle_entries(&keys);
                        let drops = keys.into_iter().filter(|k| !k.durable).collect();
                        (
                            entries,
                            Effects {
                                drops,
                                ..Effects::default()
                            },
                        )
                    }
                    Outcome::Requeue | Outcome::Reject => {
                        let dead = if outcome == Outcome::Reject {
                            keys
                        } else {
                            self.broker.requeue(&keys)
                        };
                        let (entries, moves) = self.dead_letter(&dead);
                        (
                            entries,
                            Effects {
                                moves,
                                ..Effects::default()
                            },
                        )
                    }
                    Outcome::Release => {
                        self.broker.release(&keys);
                        (Vec::new(), Effects::default())
                    }
                };
                self.submit(
                    entries,
                    Work::Op {
                        conn,
                        tag: Some(tag),
                        effects,
                    },
                );
                Ok(())
            }
            Op::Flow {
                sub_id,
                credit,
                drain,
            } => {
                self.broker.set_credit(conn, &sub_id, credit, drain);
                self.submit(
                    Vec::new(),
                    Work::Op {
                        conn,
                        tag: Some(tag),
                        effects: Effects::default(),
                    },
                );
                Ok(())
            }
            Op::CreateTemporaryQueue { address } => {
                if self.broker.queue_by_name(&address).is_some() {
                    return Err(OpError::AddressInUse(address));
                }
                let id = self.ids.next_id();
                self.broker.create_temporary_queue(conn, &address, id);
                self.submit(
                    Vec::new(),
                    Work::Op {
                        conn,
                        tag: Some(tag),
                        effects: Effects::default(),
                    },
                );
                Ok(())
            }
            Op::Begin { tx } => self.tx_begin(conn, tag, tx),
            Op::Commit { tx } => self.tx_commit(conn, tag, &tx),
            Op::Abort { tx } => self.tx_abort(conn, tag, &tx),
            Op::Barrier => {
                self.submit(
                    Vec::new(),
                    Work::Op {
                        conn,
                        tag: Some(tag),
                        effects: Effects::default(),
                    },
                );
                Ok(())
            }
        }
    }

    /// Adds one send's journal entries and in-memory work; `origin` is the
    /// sending connection.
    pub(crate) fn plan_one_send(
        &mut self,
        message: Message,
        origin: Option<ConnId>,
        entries: &mut Vec<Entry>,
        effects: &mut Effects,
    ) -> Result<(), OpError> {
        self.plan_send_inner(message, origin, true, entries, effects)
    }

    /// `plan_one_send`; `publish` false for a message the Kafka bridge
    /// made from a record (it must not go back out).
    pub(crate) fn plan_send_inner(
        &mut self,
        mut message: Message,
        origin: Option<ConnId>,
        publish: bool,
        entries: &mut Vec<Entry>,
        effects: &mut Effects,
    ) -> Result<(), OpError> {
        if let Some(routing) = self.bridged_routing(&message.address) {
            message.routing = routing;
        }
        if let Some(d) = &message.dup_id {
            let key = (message.address.clone(), d.clone());
            if self.broker.duplicate(&message.address, d).is_some()
                || self.planned_dups.contains(&key)
                || effects.dups.contains(&key)
            {
                // Stored before: answer it again, store nothing.
                return Ok(());
            }
        }
        // Before anything is planned: a message that cannot be bridged is
        // refused whole.
        let record = if publish {
            self.plan_publish(&message)?
        } else {
            None
        };
        let plan = self.broker.plan_send(
            &message.address,
            message.routing,
            message.durable,
            origin,
            &mut self.ids,
        )?;
        let id = self.ids.next_id();
        entries.extend(
            plan.creates
                .into_iter()
                .map(|d| Entry::Put(Record::QueueCreated(d))),
        );
        entries.extend(plan.declare.map(|address| {
            Entry::Put(Record::AddressCreated {
                address,
                routing: Routing::Multicast,
            })
        }));
        if let Some(d) = &message.dup_id {
            entries.push(Entry::Put(Record::DuplicateId {
                address: message.address.clone(),
                dup_id: d.clone(),
                message: id,
            }));
            let key = (message.address.clone(), d.clone());
            self.planned_dups.insert(key.clone());
            effects.dups.push(key);
        }
        let message = Arc::new(message);
        if !plan.durable_queues.is_empty() {
            entries.push(Entry::Put(Record::MessageStored {
                id,
                queues: plan.durable_queues,
                message: message.clone(),
            }));
        }
        if let Some(record) = record {
            match self.config.bridge.as_ref().map(|b| b.mode) {
                Some(BridgeMode::Outbox) => {
                    let record = Arc::new(record);
                    entries.push(Entry::Put(Record::Outbox {
                        id,
                        record: record.clone(),
                    }));
                    effects.forward.push((id, record));
                    self.counters.bridge_records_out += 1;
                }
                _ => effects.publish.push(record),
            }
        }
        effects.sends.push(VolatileSend {
            id,
            message,
            queues: plan.volatile_queues,
            origin,
        });
        Ok(())
    }

    /// Creates what a subscription needs (its durable queue) in the journal;
    /// the consumer attaches when that is durable.
    fn plan_subscribe(&mut self, conn: ConnId, tag: u64, req: SubscribeOp) -> Result<(), OpError> {
        let filter = ConsumerFilter {
            no_local: req.no_local,
            selector: match req.selector.as_deref() {
                Some(text) => Selector::parse_optional(text)?,
                None => None,
            },
        };
        let mut entries = Vec::new();
        if let SubscribeTarget::Topic { address, .. } = &req.target {
            // A subscription makes a new multicast address, as a send does.
            entries.extend(self.broker.plan_address(address).map(|address| {
                Entry::Put(Record::AddressCreated {
                    address,
                    routing: Routing::Multicast,
                })
            }));
        }
        let queue = match &req.target {
            SubscribeTarget::Queue { address } if self.bridged_routing(address).is_some() => {
                // Everything sent there is multicast: a queue would get nothing.
                return Err(OpError::BridgedIsTopic(address.clone()));
            }
            SubscribeTarget::Queue { address } => {
                let (_, create) =
                    self.broker
                        .plan_queue(address, address, QueueKind::Anycast, &mut self.ids);
                entries.extend(create.map(|d| Entry::Put(Record::QueueCreated(d))));
                Some(address.clone())
            }
            SubscribeTarget::Topic { durable: None, .. } => None,
            SubscribeTarget::Topic {
                address,
                durable: Some(sub),
                shared,
                ..
            } => {
                let qname = sub.queue_name();
                if self
                    .broker
                    .durable_subscription(&qname, address, *shared)?
                    .is_none()
                {
                    let kind = QueueKind::DurableSubscription(sub.clone());
                    let (_, create) = self.broker.plan_queue(&qname, address, kind, &mut self.ids);
                    entries.extend(create.map(|d| Entry::Put(Record::QueueCreated(d))));
                }
                Some(qname)
            }
        };
        self.submit(
            entries,
            Work::Subscribe {
                conn,
                tag,
                req: Box::new(req),
                queue,
                filter: Box::new(filter),
            },
        );
        Ok(())
    }
}
