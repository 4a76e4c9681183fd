//! Consumers: attaching, detaching, durable subscriptions and
//! connection-owned queues.

use crate::chunk_map::ChunkMap;

use super::errors::SubscribeError;
use super::queue::{ConsumerId, Queue, QueueOwner, RefState};
use super::state::{Broker, Consumer};
use super::types::{ConsumerSpec, RefKey};
use crate::ids::{ConnId, Id};
use crate::journal::{QueueKind, Routing};

impl Broker {
    /// Creates a connection-owned multicast queue (non-durable subscription).
    pub fn create_connection_queue(&mut self, conn: ConnId, address: &str, id: Id) -> Id {
        let q = Queue::new(
            id,
            format!("{}.{}.{}", address, conn, id),
            address.to_string(),
            Routing::Multicast,
            QueueOwner::Connection(conn),
        );
        self.insert_queue(q);
        id
    }

    /// Creates a connection-owned anycast queue named like its address (a
    /// temporary queue): sends to the address reach it; it ends with the
    /// connection.
    pub fn create_temporary_queue(&mut self, conn: ConnId, address: &str, id: Id) -> Id {
        let q = Queue::new(
            id,
            address.to_string(),
            address.to_string(),
            Routing::Anycast,
            QueueOwner::Connection(conn),
        );
        self.insert_queue(q);
        id
    }

    /// The queue of a non-durable shared subscription, created on first use.
    pub fn shared_volatile_queue(&mut self, name: &str, address: &str, id: Id) -> Id {
        if let Some(q) = self.names.get(name) {
            return *q;
        }
        let q = Queue::new(
            id,
            name.to_string(),
            address.to_string(),
            Routing::Multicast,
            QueueOwner::Shared,
        );
        self.insert_queue(q);
        id
    }

    /// Attaches a consumer to a queue.
    pub fn subscribe(
        &mut self,
        conn: ConnId,
        queue: Id,
        spec: ConsumerSpec,
    ) -> Result<(), SubscribeError> {
        let flow = self.conns.entry(conn).or_default();
        if flow.subs.contains_key(&spec.sub_id) {
            return Err(SubscribeError::DuplicateId(spec.sub_id));
        }
        let Some(q) = self.queues.get_mut(&queue) else {
            return Err(SubscribeError::NoQueue(queue.to_string()));
        };
        if matches!(
            q.owner,
            QueueOwner::Durable(QueueKind::DurableSubscription(_))
        ) && !q.consumers.is_empty()
            && !spec.shared
        {
            return Err(SubscribeError::DurableInUse(q.name.clone()));
        }
        let cid = ConsumerId(self.next_consumer);
        self.next_consumer += 1;
        q.consumers.push_back(cid);
        flow.subs.insert(spec.sub_id.clone(), cid);
        self.consumers.insert(
            cid,
            Consumer {
                conn,
                sub_id: spec.sub_id,
                queue,
                ack_mode: spec.ack_mode,
                window_bytes: spec.window_bytes,
                window_messages: spec.window_messages,
                credit: spec.credit,
                drain: false,
                browse: spec.browse,
                browsed_to: None,
                filter: spec.filter,
                unacked_bytes: 0,
                unacked: ChunkMap::new(),
                destination: spec.destination,
            },
        );
        self.dirty.insert(queue);
        Ok(())
    }

    /// Sets a consumer's credit (AMQP flow); with `drain`, what cannot be
    /// delivered now is given back once dispatch has run.
    pub fn set_credit(&mut self, conn: ConnId, sub_id: &str, credit: u32, drain: bool) -> bool {
        let Some(cid) = self
            .conns
            .get(&conn)
            .and_then(|f| f.subs.get(sub_id))
            .copied()
        else {
            return false;
        };
        let Some(c) = self.consumers.get_mut(&cid) else {
            return false;
        };
        c.credit = Some(credit);
        c.drain = drain;
        if drain {
            self.draining.insert(cid);
        } else {
            self.draining.remove(&cid);
        }
        self.dirty.insert(c.queue);
        true
    }

    /// Subscriptions whose drain finished since the last call: their
    /// credit is used up, and the client is to be told.
    pub fn take_drained(&mut self) -> Vec<(ConnId, String)> {
        std::mem::take(&mut self.drained)
    }

    /// Checks a durable subscription can be attached: returns its queue if it exists.
    pub fn durable_subscription(
        &self,
        name: &str,
        address: &str,
        shared: bool,
    ) -> Result<Option<Id>, SubscribeError> {
        match self.names.get(name).and_then(|id| self.queues.get(id)) {
            None => Ok(None),
            Some(q) if q.address != address => Err(SubscribeError::DurableOtherAddress {
                name: name.to_string(),
                existing: q.address.clone(),
                requested: address.to_string(),
            }),
            Some(q) if !q.consumers.is_empty() && !shared => {
                Err(SubscribeError::DurableInUse(name.to_string()))
            }
            Some(q) => Ok(Some(q.id)),
        }
    }

    pub fn has_subscription(&self, conn: ConnId, sub_id: &str) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|f| f.subs.contains_key(sub_id))
    }

    /// Detaches a consumer. Its unacknowledged messages go back to the queue;
    /// those past `delivery_attempts_max` are returned for dead-lettering. A
    /// connection-owned queue is deleted with its consumer.
    pub fn unsubscribe(&mut self, conn: ConnId, sub_id: &str) -> Option<Vec<RefKey>> {
        let cid = self.conns.get_mut(&conn)?.subs.remove(sub_id)?;
        Some(self.remove_consumer(cid))
    }

    pub(crate) fn remove_consumer(&mut self, cid: ConsumerId) -> Vec<RefKey> {
        let Some(c) = self.consumers.remove(&cid) else {
            return Vec::new();
        };
        self.draining.remove(&cid);
        if let Some(flow) = self.conns.get_mut(&c.conn) {
            flow.subs.remove(&c.sub_id);
            for seq in c.unacked.keys() {
                flow.acks.remove(seq);
            }
        }
        let mut returned = Vec::new();
        let mut delete = false;
        if let Some(q) = self.queues.get_mut(&c.queue) {
            q.consumers.retain(|x| *x != cid);
            for (mid, _) in c.unacked.values() {
                if let Some(r) = q.refs.get_mut(mid) {
                    r.state = RefState::Settling;
                    returned.push(RefKey {
                        message: *mid,
                        queue: c.queue,
                        durable: r.durable,
                    });
                }
            }
            delete = match q.owner {
                QueueOwner::Connection(_) => q.routing == Routing::Multicast,
                QueueOwner::Shared => q.consumers.is_empty(),
                QueueOwner::Durable(_) => false,
            };
        }
        if delete {
            self.delete_queue(c.queue);
            return Vec::new();
        }
        self.requeue(&returned)
    }

    /// The connection is gone: detach all its consumers and forget it.
    /// Returns references that must be dead-lettered.
    pub fn connection_closed(&mut self, conn: ConnId) -> Vec<RefKey> {
        let Some(flow) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        let mut dlq = Vec::new();
        for cid in flow.subs.values() {
            dlq.extend(self.remove_consumer(*cid));
        }
        // Its temporary queues go with it.
        let temporary: Vec<Id> = self
            .queues
            .values()
            .filter(|q| q.owner == QueueOwner::Connection(conn))
            .map(|q| q.id)
            .collect();
        for q in temporary {
            self.delete_queue(q);
        }
        dlq
    }

    pub(crate) fn forget_unacked(&mut self, consumer: ConsumerId, ack_seq: u64) {
        if let Some(c) = self.consumers.get_mut(&consumer) {
            if let Some((_, size)) = c.unacked.remove(&ack_seq) {
                c.unacked_bytes = c.unacked_bytes.saturating_sub(size);
                self.dirty.insert(c.queue);
            }
            if let Some(flow) = self.conns.get_mut(&c.conn) {
                flow.acks.remove(&ack_seq);
            }
        }
    }
}
