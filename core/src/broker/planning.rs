//! Where a send goes and which durable queues it needs: planned before
//! the journal batch, applied when it is durable.

use std::sync::Arc;

use super::destination::Destination;
use super::errors::SendError;
use super::queue::Queue;
use super::state::{Broker, Msg};
use super::types::SendPlan;
use crate::ids::{Id, IdGen};
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

    /// Works out which queues a send reaches, auto-creating the anycast queue.
    pub fn plan_send(
        &mut self,
        dest: &Destination,
        persistent: bool,
        ids: &mut IdGen,
    ) -> Result<SendPlan, SendError> {
        if self.messages.len() >= self.config.messages_max {
            return Err(SendError::Full(self.messages.len()));
        }
        let mut plan = SendPlan::default();
        match dest.routing {
            Routing::Anycast => {
                let (id, create) =
                    self.plan_queue(&dest.address, &dest.address, QueueKind::Anycast, ids);
                plan.creates.extend(create);
                if persistent {
                    plan.durable_queues.push(id);
                } else {
                    plan.volatile_queues.push(id);
                }
            }
            Routing::Multicast => {
                if let Some(a) = self.addresses.get(&dest.address) {
                    for q in &a.multicast {
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
                    if def.address == dest.address
                        && matches!(def.kind, QueueKind::DurableSubscription(_))
                        && persistent
                    {
                        plan.durable_queues.push(def.id);
                    }
                }
            }
        }
        Ok(plan)
    }

    /// Adds in-memory references (non-persistent sends, non-durable
    /// subscriptions) once the send's turn in the pipeline has come.
    pub fn add_volatile(&mut self, id: Id, message: &Arc<Message>, queues: &[Id]) {
        if queues.is_empty() {
            return;
        }
        self.messages.entry(id).or_insert_with(|| Msg {
            body: message.clone(),
            refs: 0,
            durable_refs: 0,
            journaled: false,
            ref_keys: Vec::new(),
        });
        for q in queues {
            self.add_ref(id, *q, false);
        }
        self.check_dead(id);
    }
}
