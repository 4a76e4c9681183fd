//! Applying journal entries (live or replayed) to the broker: queues,
//! references and duplicate ids change only here.

use super::dups::DupCache;
use super::queue::{ConsumerId, Queue, QueueOwner, RefState, RefTimes};
use super::state::{settle_entries_into, Broker};
use super::types::RefKey;
use crate::ids::Id;
use crate::journal::{Entry, Key, QueueDef, QueueKind, Record, Routing};

impl Broker {
    /// Applies one durable journal entry. Replay and the live path both come
    /// through here, so their states cannot differ.
    pub fn apply(&mut self, entry: &Entry) {
        match entry {
            Entry::Put(Record::Activation { epoch, .. }) => {
                self.max_epoch = self.max_epoch.max(*epoch);
            }
            Entry::Put(Record::QueueCreated(def)) => self.create_durable_queue(def),
            Entry::Put(Record::MessageStored {
                id,
                queues,
                message,
            }) => {
                let msg = self.msg_entry(*id, message, true);
                msg.journaled = true;
                for q in queues {
                    self.add_ref(*id, *q, true);
                }
                self.check_dead(*id);
                self.maybe_page_out(*id);
            }
            Entry::Put(Record::Routed { id, queue }) => {
                if let Some(m) = self.messages.get_mut(id).filter(|m| m.journaled) {
                    m.note_ref_key(*queue);
                    self.add_ref(*id, *queue, true);
                }
            }
            Entry::Put(Record::Acked { id, queue }) => {
                if let Some(m) = self.messages.get_mut(id) {
                    m.note_ref_key(*queue);
                }
                self.drop_ref(*id, *queue);
            }
            Entry::Put(Record::DuplicateId {
                address,
                dup_id,
                message,
            }) => self.remember_dup(address, dup_id, *message),
            Entry::Put(Record::AddressCreated { address, routing }) => {
                self.addresses.entry(address.clone()).or_default().declared = Some(*routing);
            }
            Entry::Put(Record::BridgePosition {
                topic,
                partition,
                next_offset,
            }) => {
                let at = self
                    .bridge_positions
                    .entry((topic.clone(), *partition))
                    .or_default();
                // Positions only move forward: the journal holds them in order.
                debug_assert!(*at <= *next_offset, "bridge position went back");
                *at = (*at).max(*next_offset);
            }
            Entry::Put(Record::Outbox { id, record }) => {
                self.outbox.insert(*id, record.clone());
            }
            Entry::Tombstone(Key::Outbox(id)) => {
                self.outbox.remove(id);
            }
            Entry::Tombstone(Key::BridgePosition { topic, partition }) => {
                self.bridge_positions.remove(&(topic.clone(), *partition));
            }
            Entry::Tombstone(Key::Address(address)) => {
                if let Some(a) = self.addresses.get_mut(address) {
                    a.declared = None;
                    if a.is_empty() {
                        self.addresses.remove(address);
                    }
                }
            }
            Entry::Tombstone(Key::Queue(name)) => {
                if let Some(id) = self.names.get(name).copied() {
                    self.delete_queue(id);
                }
            }
            Entry::Tombstone(Key::Message(id)) => {
                if let Some(m) = self.messages.get_mut(id) {
                    // The journal forgot it: its journaled references are
                    // stale. In-memory ones (a non-durable subscription's
                    // copy) live on until their consumer settles them.
                    m.journaled = false;
                    let queues: Vec<Id> = self
                        .queues
                        .iter()
                        .filter(|(_, q)| q.refs.get(id).is_some_and(|r| r.durable))
                        .map(|(qid, _)| *qid)
                        .collect();
                    for q in queues {
                        self.drop_ref(*id, q);
                    }
                }
                self.dead.retain(|(d, _)| d != id);
                for waiting in self.orphans.values_mut() {
                    waiting.retain(|m| m != id);
                }
            }
            Entry::Tombstone(Key::Duplicate { address, dup_id }) => {
                if self.loading {
                    self.evicted_in_load.remove(&Key::Duplicate {
                        address: address.clone(),
                        dup_id: dup_id.clone(),
                    });
                }
                // Usually the id was already evicted (that is why the
                // tombstone exists): only scan the order when it is present.
                if let Some(c) = self.dups.get_mut(address) {
                    c.remove(dup_id);
                }
            }
            Entry::Tombstone(Key::Ref { .. }) | Entry::Tombstone(Key::Activation) => {}
        }
    }

    /// Journaled messages that no durable queue references any more, with
    /// the queues whose `r/` keys must be tombstoned too.
    pub fn take_dead(&mut self) -> Vec<(Id, Vec<Id>)> {
        std::mem::take(&mut self.dead)
    }

    /// Duplicate-id keys evicted from the bounded cache.
    pub fn take_dead_dups(&mut self) -> Vec<Key> {
        std::mem::take(&mut self.dead_dups)
    }

    /// The journal entries that settle (acknowledge) `keys`, which
    /// `settle` returned. See `settle_entries_into`.
    pub fn settle_entries(&self, keys: &[RefKey]) -> Vec<Entry> {
        let mut out = Vec::new();
        for k in keys {
            settle_entries_into(self.messages.get(&k.message), k, &mut out);
        }
        out
    }

    /// The tombstones that let compaction drop a dead message.
    pub fn tombstones_for(message: Id, queues: &[Id]) -> Vec<Entry> {
        // The message key first: if a crash splits the batch, losing the
        // `r/` tombstones is harmless while the `m/` one is what frees space.
        let mut v = vec![Entry::Tombstone(Key::Message(message))];
        v.extend(
            queues
                .iter()
                .map(|q| Entry::Tombstone(Key::Ref { message, queue: *q })),
        );
        v
    }

    pub(crate) fn create_durable_queue(&mut self, def: &QueueDef) {
        if let Some(existing) = self.names.get(&def.name).copied() {
            if existing == def.id {
                return;
            }
            // A newer incarnation under the same name replaces the old one.
            self.delete_queue(existing);
        }
        self.planned.remove(&def.name);
        let routing = match def.kind {
            QueueKind::Anycast => Routing::Anycast,
            QueueKind::DurableSubscription(_) => Routing::Multicast,
        };
        let q = Queue::new(
            def.id,
            def.name.clone(),
            def.address.clone(),
            routing,
            QueueOwner::Durable(def.kind.clone()),
        );
        self.insert_queue(q);
        for m in self.orphans.remove(&def.id).unwrap_or_default() {
            self.add_ref(m, def.id, true);
        }
    }

    pub(crate) fn insert_queue(&mut self, q: Queue) {
        self.queues_generation += 1;
        let a = self.addresses.entry(q.address.clone()).or_default();
        match q.routing {
            Routing::Anycast => a.anycast = Some(q.id),
            Routing::Multicast => {
                a.multicast.insert(q.id);
            }
        }
        self.names.insert(q.name.clone(), q.id);
        self.queues.insert(q.id, q);
    }

    pub(crate) fn delete_queue(&mut self, id: Id) {
        let Some(q) = self.queues.get(&id) else {
            return;
        };
        let consumers: Vec<ConsumerId> = q.consumers.iter().copied().collect();
        for c in consumers {
            self.remove_consumer(c);
        }
        let Some(q) = self.queues.remove(&id) else {
            return;
        };
        self.queues_generation += 1;
        if self.names.get(&q.name) == Some(&id) {
            self.names.remove(&q.name);
        }
        if let Some(a) = self.addresses.get_mut(&q.address) {
            if a.anycast == Some(id) {
                a.anycast = None;
            }
            a.multicast.remove(&id);
            if a.is_empty() {
                self.addresses.remove(&q.address);
            }
        }
        self.dirty.remove(&id);
        for (mid, r) in q.refs {
            if let RefState::Scheduled { at } = r.state {
                self.scheduled.remove(&(at, id, mid));
            }
            self.release_ref(mid, r.durable);
        }
    }

    pub(crate) fn add_ref(&mut self, message: Id, queue: Id, durable: bool) {
        let Some(q) = self.queues.get_mut(&queue) else {
            if self.loading && durable && self.messages.contains_key(&message) {
                self.orphans.entry(queue).or_default().push(message);
            }
            return;
        };
        let Some(m) = self.messages.get_mut(&message) else {
            return;
        };
        let durable = durable && q.durable();
        // A message's own times apply in the queues of its own address: a
        // dead-lettered or expired one neither waits nor expires again
        // (Artemis's moved copies carry no expiration either).
        let own = q.address == m.body.address;
        let times = RefTimes {
            priority: m.body.priority,
            expires_at: m
                .body
                .expiration_ms
                .filter(|_| own && q.address != self.config.expiry_address),
            deliver_at: m.body.deliver_at_ms.filter(|_| own),
        };
        if q.push(message, durable, times) {
            q.counters.added += 1;
            m.refs += 1;
            if durable {
                m.durable_refs += 1;
            }
            match times.deliver_at {
                Some(at) => {
                    self.scheduled.insert((at, queue, message));
                }
                None => {
                    self.dirty.insert(queue);
                }
            }
        }
    }

    /// Removes a queue's reference to a message, wherever it stands.
    pub(crate) fn drop_ref(&mut self, message: Id, queue: Id) {
        let Some(q) = self.queues.get_mut(&queue) else {
            if let Some(waiting) = self.orphans.get_mut(&queue) {
                waiting.retain(|m| *m != message);
            }
            return;
        };
        let Some(r) = q.remove(message) else {
            return;
        };
        match r.state {
            RefState::Delivered { consumer, ack_seq } => self.forget_unacked(consumer, ack_seq),
            RefState::Scheduled { at } => {
                self.scheduled.remove(&(at, queue, message));
            }
            RefState::Ready | RefState::Settling => {}
        }
        self.release_ref(message, r.durable);
    }

    pub(crate) fn release_ref(&mut self, message: Id, durable: bool) {
        let Some(m) = self.messages.get_mut(&message) else {
            return;
        };
        m.refs = m.refs.saturating_sub(1);
        if durable {
            m.durable_refs = m.durable_refs.saturating_sub(1);
        }
        let left = m.refs > 0;
        self.check_dead(message);
        // Read back for one queue, still waiting in another: page it out
        // again rather than hold it for the slowest subscriber.
        if left {
            self.maybe_page_out(message);
        }
    }

    pub(crate) fn check_dead(&mut self, message: Id) {
        if self.loading {
            return;
        }
        let Some(m) = self.messages.get_mut(&message) else {
            return;
        };
        // A paged message's record stays until its last reference (a
        // volatile one) is gone: its body is nowhere else.
        if m.journaled && m.durable_refs == 0 && !(m.paged && m.refs > 0) {
            m.journaled = false;
            self.dead.push((message, m.ref_keys.clone()));
        }
        if m.refs == 0 && !m.journaled {
            self.remove_msg(message);
        }
    }

    pub(crate) fn remember_dup(&mut self, address: &str, dup_id: &str, message: Id) {
        let max = self.config.duplicate_ids_per_address_max.max(1);
        if !self.dups.contains_key(address) {
            self.dups.insert(address.to_owned(), DupCache::default());
        }
        let c = self.dups.get_mut(address).expect("inserted above");
        c.insert(dup_id, message);
        while c.len() > max {
            if let Some(old) = c.pop_oldest() {
                let key = Key::Duplicate {
                    address: address.to_string(),
                    dup_id: old,
                };
                if self.loading {
                    // Its tombstone is most likely further on in the journal:
                    // write one only if the replay never meets it.
                    self.evicted_in_load.insert(key);
                } else {
                    self.dead_dups.push(key);
                }
            }
        }
    }

    /// The message stored under a duplicate-detection id, if remembered.
    pub fn duplicate(&self, address: &str, dup_id: &str) -> Option<Id> {
        self.dups.get(address)?.get(dup_id)
    }
}
