//! Where a send goes and which durable queues it needs: planned before
//! the journal batch, applied when it is durable.

use std::sync::Arc;

use super::errors::SendError;
use super::queue::Queue;
use super::state::Broker;
use super::types::SendPlan;
use crate::ids::{ConnId, Id, IdGen};
use crate::journal::{QueueDef, QueueKind, Routing};
use crate::message::Message;

impl Broker {
    /// The durable queue named `name`, or a definition to create it with
    /// (minted once, so concurrent sends agree on its id).
    pub fn plan_queue(
        &mut self,
        name: &str,
        address: &str,
        kind: QueueKind,
        ids: &mut IdGen,
    ) -> (Id, Option<QueueDef>) {
        if let Some(id) = self.names.get(name) {
            return (*id, None);
        }
        let def = self
            .planned
            .entry(name.to_string())
            .or_insert_with(|| QueueDef {
                id: ids.next_id(),
                name: name.to_string(),
                address: address.to_string(),
                kind,
            });
        (def.id, Some(def.clone()))
    }

    /// A multicast address to declare, unless `address` is declared
    /// already or is anycast: Artemis creates an address with the routing
    /// of the first send or subscription, and it outlives its
    /// subscriptions, so a later bare name resolves to it. Sends in flight
    /// together may each declare it: the record is idempotent (one key),
    /// and nothing is left planned if an operation is refused.
    pub fn plan_address(&self, address: &str) -> Option<String> {
        let known = self
            .addresses
            .get(address)
            .is_some_and(|a| a.anycast.is_some() || a.declared.is_some());
        (!known).then(|| address.to_string())
    }

    /// Whether queue `q` holds a no-local consumer on `conn` (its
    /// subscription takes no copy of what `conn` sends).
    fn no_local_on(&self, q: Id, conn: ConnId) -> bool {
        self.queues.get(&q).is_some_and(|q| {
            q.consumers.iter().any(|cid| {
                self.consumers
                    .get(cid)
                    .is_some_and(|c| c.filter.no_local && c.conn == conn)
            })
        })
    }

    /// Works out which queues a send from `origin` reaches, auto-creating
    /// the anycast queue (or declaring the multicast address).
    pub fn plan_send(
        &mut self,
        address: &str,
        routing: Routing,
        persistent: bool,
        origin: Option<ConnId>,
        ids: &mut IdGen,
    ) -> Result<SendPlan, SendError> {
        if self.messages.len() >= self.config.messages_max {
            return Err(SendError::Full(self.messages.len()));
        }
        let mut plan = SendPlan::default();
        match routing {
            Routing::Anycast => {
                let (id, create) = self.plan_queue(address, address, QueueKind::Anycast, ids);
                plan.creates.extend(create);
                // A temporary queue is not journaled: neither are its messages.
                let durable = self.queues.get(&id).is_none_or(Queue::durable);
                if persistent && durable {
                    plan.durable_queues.push(id);
                } else {
                    plan.volatile_queues.push(id);
                }
            }
            Routing::Multicast => {
                if let Some(a) = self.addresses.get(address) {
                    for q in &a.multicast {
                        if origin.is_some_and(|o| self.no_local_on(*q, o)) {
                            continue;
                        }
                        let durable = self.queues.get(q).is_some_and(Queue::durable);
                        if persistent && durable {
                            plan.durable_queues.push(*q);
                        } else {
                            plan.volatile_queues.push(*q);
                        }
                    }
                }
                // Durable subscriptions being created right now also get it.
                for def in self.planned.values() {
                    if def.address == address
                        && matches!(def.kind, QueueKind::DurableSubscription(_))
                        && persistent
                    {
                        plan.durable_queues.push(def.id);
                    }
                }
                plan.declare = self.plan_address(address);
            }
        }
        Ok(plan)
    }

    /// Remembers which connection sent a stored message (for no-local
    /// consumers).
    pub fn note_origin(&mut self, id: Id, conn: ConnId) {
        if let Some(m) = self.messages.get_mut(&id) {
            m.origin = Some(conn);
        }
    }

    /// Adds in-memory references (non-persistent sends, non-durable
    /// subscriptions) once the send's turn in the pipeline has come.
    pub fn add_volatile(&mut self, id: Id, message: &Arc<Message>, queues: &[Id]) {
        if queues.is_empty() {
            return;
        }
        self.msg_entry(id, message, false);
        for q in queues {
            self.add_ref(id, *q, false);
        }
        self.check_dead(id);
    }
}
