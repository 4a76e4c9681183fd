//! The broker's state and every operation on it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use thiserror::Error;

use super::destination::Destination;
use super::queue::{AckMode, ConsumerId, Queue, QueueOwner, RefState};
use super::BrokerConfig;
use crate::ids::{ConnId, Id, IdGen};
use crate::journal::{Entry, Key, QueueDef, QueueKind, Record, Routing, StoredMessage};

/// One queue's reference to one message.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RefKey {
    pub message: Id,
    pub queue: Id,
    /// Journaled: removing or moving it takes a journal record.
    pub durable: bool,
}

/// A message handed to a consumer; the node turns it into a MESSAGE frame.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub conn: ConnId,
    pub sub_id: String,
    /// The `ack` header value, for client and client-individual subscriptions.
    pub ack: Option<u64>,
    pub message_id: Id,
    pub queue: Id,
    pub message: Arc<StoredMessage>,
    /// 1 on first delivery.
    pub deliveries: u32,
    pub destination: String,
    /// The queue's address differs from the message's (dead-lettered).
    pub original_address: Option<String>,
    /// Auto-ack: this reference is settled by sending it; journal its ack.
    pub auto_settled: Option<RefKey>,
    /// The journal entries that settle `auto_settled` (see
    /// [`Broker::settle_entries`]); empty for a volatile reference.
    pub auto_settle_entries: Vec<Entry>,
}

/// Where a send goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendPlan {
    /// Durable queues that do not exist yet and are created in the same batch.
    pub creates: Vec<QueueDef>,
    /// Durable queues that keep a journaled reference (persistent sends only).
    pub durable_queues: Vec<Id>,
    /// Queues that hold it in memory only.
    pub volatile_queues: Vec<Id>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AckError {
    #[error("unknown ack id {0:?} (not delivered on this connection, or already acknowledged)")]
    UnknownAckId(String),
    #[error("ack id {0:?} belongs to an auto-acknowledged subscription")]
    AutoAck(String),
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SubscribeError {
    #[error("subscription id {0:?} is already in use on this connection")]
    DuplicateId(String),
    #[error("durable subscription {0:?} already has an active subscriber")]
    DurableInUse(String),
    #[error("durable subscription {name:?} exists on address {existing:?}, not {requested:?}")]
    DurableOtherAddress {
        name: String,
        existing: String,
        requested: String,
    },
    #[error("queue {0:?} does not exist")]
    NoQueue(String),
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SendError {
    #[error("broker is full ({0} messages held); try again later")]
    Full(usize),
}

#[derive(Clone, Debug)]
struct Consumer {
    conn: ConnId,
    sub_id: String,
    queue: Id,
    ack_mode: AckMode,
    window_bytes: Option<usize>,
    unacked_bytes: usize,
    /// ack seq -> (message, size), in delivery order for cumulative acks.
    unacked: BTreeMap<u64, (Id, usize)>,
    destination: String,
}

#[derive(Clone, Debug, Default)]
struct ConnFlow {
    subs: BTreeMap<String, ConsumerId>,
    acks: BTreeMap<u64, ConsumerId>,
    next_ack: u64,
    unflushed_bytes: usize,
}

#[derive(Clone, Debug, Default)]
struct Address {
    anycast: Option<Id>,
    multicast: BTreeSet<Id>,
}

#[derive(Clone, Debug)]
struct Msg {
    body: Arc<StoredMessage>,
    /// References from any queue.
    refs: usize,
    /// References that are journaled.
    durable_refs: usize,
    /// Still has a live `m/` record in the journal.
    journaled: bool,
    /// Queues whose `r/` key (a `Routed` or `Acked` record) the journal
    /// holds for it: the `r/` keys to tombstone with it.
    ref_keys: Vec<Id>,
}

impl Msg {
    fn note_ref_key(&mut self, queue: Id) {
        if !self.ref_keys.contains(&queue) {
            self.ref_keys.push(queue);
        }
    }
}

/// Appends the journal entries that settle one reference (nothing for a
/// volatile one). Usually an `Acked` record; once the message is dead, the
/// node tombstones its `m/` and `r/` keys in a later batch so that
/// compaction can drop it. When the reference is the message's only one,
/// the tombstones alone settle it: replay (and the live path, which applies
/// the same entries) drops every reference of a tombstoned message. That is
/// one batch and 1 record per consumed message instead of 2 batches and 3
/// records, and nothing can add a reference to a stored message meanwhile
/// (the reference being settled is not deliverable, and dead-lettering only
/// moves unsettled ones).
fn settle_entries_into(m: Option<&Msg>, key: &RefKey, out: &mut Vec<Entry>) {
    if !key.durable {
        return;
    }
    match m {
        Some(m) if m.journaled && m.refs == 1 && m.durable_refs == 1 => {
            out.extend(Broker::tombstones_for(key.message, &m.ref_keys));
        }
        _ => out.push(Entry::Put(Record::Acked {
            id: key.message,
            queue: key.queue,
        })),
    }
}

/// Remembered duplicate-detection ids of one address, oldest first.
#[derive(Clone, Debug, Default)]
struct DupCache {
    order: VecDeque<String>,
    ids: BTreeMap<String, Id>,
}

/// The broker state. See the module docs of [`crate::broker`].
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    queues: BTreeMap<Id, Queue>,
    names: BTreeMap<String, Id>,
    addresses: BTreeMap<String, Address>,
    messages: BTreeMap<Id, Msg>,
    /// Durable queues minted for a pending send or subscribe but not yet applied.
    planned: BTreeMap<String, QueueDef>,
    consumers: BTreeMap<ConsumerId, Consumer>,
    next_consumer: u64,
    conns: BTreeMap<ConnId, ConnFlow>,
    /// Queues that may be able to deliver.
    dirty: BTreeSet<Id>,
    /// Journaled messages no durable queue references any more: tombstone them.
    dead: Vec<(Id, Vec<Id>)>,
    dups: BTreeMap<String, DupCache>,
    /// Duplicate ids evicted from the bounded cache: tombstone their keys.
    dead_dups: Vec<Key>,
    max_epoch: u32,
    /// Reading the journal: references may name queues whose creation record
    /// comes later (compaction keeps only the latest copy of a re-emitted
    /// `QueueCreated`), so they wait here until the load finishes.
    loading: bool,
    orphans: BTreeMap<Id, Vec<Id>>,
    /// Duplicate ids evicted while replaying whose tombstones were not (yet) seen.
    evicted_in_load: BTreeSet<Key>,
}

impl Broker {
    pub fn new(config: BrokerConfig) -> Broker {
        Broker {
            config,
            queues: BTreeMap::new(),
            names: BTreeMap::new(),
            addresses: BTreeMap::new(),
            messages: BTreeMap::new(),
            planned: BTreeMap::new(),
            consumers: BTreeMap::new(),
            next_consumer: 1,
            conns: BTreeMap::new(),
            dirty: BTreeSet::new(),
            dead: Vec::new(),
            dups: BTreeMap::new(),
            dead_dups: Vec::new(),
            max_epoch: 0,
            loading: false,
            orphans: BTreeMap::new(),
            evicted_in_load: BTreeSet::new(),
        }
    }

    /// Starts replaying a journal (see `orphans`).
    pub fn begin_load(&mut self) {
        self.loading = true;
    }

    /// The whole journal has been applied: references to queues that never
    /// appeared are dropped, and messages nobody references become dead.
    pub fn finish_load(&mut self) {
        self.loading = false;
        self.orphans.clear();
        // Evictions whose tombstones the journal lacks (a crash came between).
        self.dead_dups
            .extend(std::mem::take(&mut self.evicted_in_load));
        let ids: Vec<Id> = self.messages.keys().copied().collect();
        for id in ids {
            self.check_dead(id);
        }
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Highest activation epoch seen in the journal.
    pub fn max_epoch(&self) -> u32 {
        self.max_epoch
    }

    pub fn queue(&self, id: Id) -> Option<&Queue> {
        self.queues.get(&id)
    }

    pub fn queue_by_name(&self, name: &str) -> Option<&Queue> {
        self.names.get(name).and_then(|id| self.queues.get(id))
    }

    pub fn queues(&self) -> impl Iterator<Item = &Queue> {
        self.queues.values()
    }

    pub fn message(&self, id: Id) -> Option<&Arc<StoredMessage>> {
        self.messages.get(&id).map(|m| &m.body)
    }

    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// Routing of an existing address, for bare destination names.
    pub fn address_routing(&self, address: &str) -> Option<Routing> {
        let a = self.addresses.get(address)?;
        if a.anycast.is_some() {
            Some(Routing::Anycast)
        } else if !a.multicast.is_empty() {
            Some(Routing::Multicast)
        } else {
            None
        }
    }

    // ---------------------------------------------------------------- journal

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
                let msg = self.messages.entry(*id).or_insert_with(|| Msg {
                    body: message.clone(),
                    refs: 0,
                    durable_refs: 0,
                    journaled: true,
                    ref_keys: Vec::new(),
                });
                msg.journaled = true;
                for q in queues {
                    self.add_ref(*id, *q, true);
                }
                self.check_dead(*id);
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
                    if c.ids.remove(dup_id).is_some() {
                        c.order.retain(|d| d != dup_id);
                    }
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

    fn create_durable_queue(&mut self, def: &QueueDef) {
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

    fn insert_queue(&mut self, q: Queue) {
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

    fn delete_queue(&mut self, id: Id) {
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
        if self.names.get(&q.name) == Some(&id) {
            self.names.remove(&q.name);
        }
        if let Some(a) = self.addresses.get_mut(&q.address) {
            if a.anycast == Some(id) {
                a.anycast = None;
            }
            a.multicast.remove(&id);
            if a.anycast.is_none() && a.multicast.is_empty() {
                self.addresses.remove(&q.address);
            }
        }
        self.dirty.remove(&id);
        for (mid, r) in q.refs {
            self.release_ref(mid, r.durable);
        }
    }

    fn add_ref(&mut self, message: Id, queue: Id, durable: bool) {
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
        if q.push(message, durable) {
            m.refs += 1;
            if durable {
                m.durable_refs += 1;
            }
            self.dirty.insert(queue);
        }
    }

    /// Removes a queue's reference to a message, wherever it stands.
    fn drop_ref(&mut self, message: Id, queue: Id) {
        let Some(q) = self.queues.get_mut(&queue) else {
            if let Some(waiting) = self.orphans.get_mut(&queue) {
                waiting.retain(|m| *m != message);
            }
            return;
        };
        let Some(r) = q.remove(message) else {
            return;
        };
        if let RefState::Delivered { consumer, ack_seq } = r.state {
            self.forget_unacked(consumer, ack_seq);
        }
        self.release_ref(message, r.durable);
    }

    fn release_ref(&mut self, message: Id, durable: bool) {
        let Some(m) = self.messages.get_mut(&message) else {
            return;
        };
        m.refs = m.refs.saturating_sub(1);
        if durable {
            m.durable_refs = m.durable_refs.saturating_sub(1);
        }
        self.check_dead(message);
    }

    fn check_dead(&mut self, message: Id) {
        if self.loading {
            return;
        }
        let Some(m) = self.messages.get_mut(&message) else {
            return;
        };
        if m.journaled && m.durable_refs == 0 {
            m.journaled = false;
            self.dead.push((message, m.ref_keys.clone()));
        }
        if m.refs == 0 && !m.journaled {
            self.messages.remove(&message);
        }
    }

    fn remember_dup(&mut self, address: &str, dup_id: &str, message: Id) {
        let max = self.config.duplicate_ids_per_address_max.max(1);
        let c = self.dups.entry(address.to_string()).or_default();
        if c.ids.insert(dup_id.to_string(), message).is_none() {
            c.order.push_back(dup_id.to_string());
        }
        while c.order.len() > max {
            if let Some(old) = c.order.pop_front() {
                c.ids.remove(&old);
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
        self.dups.get(address)?.ids.get(dup_id).copied()
    }

    // --------------------------------------------------------------- planning

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
    pub fn add_volatile(&mut self, id: Id, message: &Arc<StoredMessage>, queues: &[Id]) {
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

    // -------------------------------------------------------------- consumers

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

    /// Attaches a consumer to a queue.
    #[allow(clippy::too_many_arguments)]
    pub fn subscribe(
        &mut self,
        conn: ConnId,
        sub_id: &str,
        queue: Id,
        ack_mode: AckMode,
        window_bytes: Option<usize>,
        destination: String,
    ) -> Result<(), SubscribeError> {
        let flow = self.conns.entry(conn).or_default();
        if flow.subs.contains_key(sub_id) {
            return Err(SubscribeError::DuplicateId(sub_id.to_string()));
        }
        let Some(q) = self.queues.get_mut(&queue) else {
            return Err(SubscribeError::NoQueue(queue.to_string()));
        };
        if matches!(
            q.owner,
            QueueOwner::Durable(QueueKind::DurableSubscription(_))
        ) && !q.consumers.is_empty()
        {
            return Err(SubscribeError::DurableInUse(q.name.clone()));
        }
        let cid = ConsumerId(self.next_consumer);
        self.next_consumer += 1;
        q.consumers.push_back(cid);
        flow.subs.insert(sub_id.to_string(), cid);
        self.consumers.insert(
            cid,
            Consumer {
                conn,
                sub_id: sub_id.to_string(),
                queue,
                ack_mode,
                window_bytes,
                unacked_bytes: 0,
                unacked: BTreeMap::new(),
                destination,
            },
        );
        self.dirty.insert(queue);
        Ok(())
    }

    /// Checks a durable subscription can be attached: returns its queue if it exists.
    pub fn durable_subscription(
        &self,
        name: &str,
        address: &str,
    ) -> Result<Option<Id>, SubscribeError> {
        match self.names.get(name).and_then(|id| self.queues.get(id)) {
            None => Ok(None),
            Some(q) if q.address != address => Err(SubscribeError::DurableOtherAddress {
                name: name.to_string(),
                existing: q.address.clone(),
                requested: address.to_string(),
            }),
            Some(q) if !q.consumers.is_empty() => {
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
    /// those past `max_delivery_attempts` are returned for dead-lettering. A
    /// connection-owned queue is deleted with its consumer.
    pub fn unsubscribe(&mut self, conn: ConnId, sub_id: &str) -> Option<Vec<RefKey>> {
        let cid = self.conns.get_mut(&conn)?.subs.remove(sub_id)?;
        Some(self.remove_consumer(cid))
    }

    fn remove_consumer(&mut self, cid: ConsumerId) -> Vec<RefKey> {
        let Some(c) = self.consumers.remove(&cid) else {
            return Vec::new();
        };
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
            delete = matches!(q.owner, QueueOwner::Connection(_));
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
        dlq
    }

    fn forget_unacked(&mut self, consumer: ConsumerId, ack_seq: u64) {
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

    // ------------------------------------------------------------------ acks

    /// Takes delivered messages out of a consumer's hands for an ACK or NACK
    /// (cumulative in `client` mode). They are `Settling` until the caller
    /// finishes them with a journaled ack, [`Broker::drop_volatile`] or
    /// [`Broker::requeue`].
    pub fn settle(&mut self, conn: ConnId, ack: &str) -> Result<Vec<RefKey>, AckError> {
        let unknown = || AckError::UnknownAckId(ack.to_string());
        let seq: u64 = ack.parse().map_err(|_| unknown())?;
        let flow = self.conns.get_mut(&conn).ok_or_else(unknown)?;
        let cid = *flow.acks.get(&seq).ok_or_else(unknown)?;
        let c = self.consumers.get_mut(&cid).ok_or_else(unknown)?;
        let seqs: Vec<u64> = match c.ack_mode {
            AckMode::Auto => return Err(AckError::AutoAck(ack.to_string())),
            AckMode::Client => c.unacked.range(..=seq).map(|(s, _)| *s).collect(),
            AckMode::ClientIndividual => vec![seq],
        };
        let mut keys = Vec::with_capacity(seqs.len());
        for s in seqs {
            if let Some((mid, size)) = c.unacked.remove(&s) {
                c.unacked_bytes = c.unacked_bytes.saturating_sub(size);
                flow.acks.remove(&s);
                if let Some(q) = self.queues.get_mut(&c.queue) {
                    if let Some(r) = q.refs.get_mut(&mid) {
                        r.state = RefState::Settling;
                        keys.push(RefKey {
                            message: mid,
                            queue: c.queue,
                            durable: r.durable,
                        });
                    }
                }
            }
        }
        self.dirty.insert(c.queue);
        Ok(keys)
    }

    /// The ack id of a message delivered on `conn` (STOMP 1.0/1.1 clients ack
    /// by `message-id`), optionally limited to one subscription.
    pub fn ack_for_message(&self, conn: ConnId, sub_id: Option<&str>, message: Id) -> Option<u64> {
        let flow = self.conns.get(&conn)?;
        flow.subs
            .iter()
            .filter(|(s, _)| sub_id.is_none_or(|want| want == s.as_str()))
            .filter_map(|(_, cid)| self.consumers.get(cid))
            .find_map(|c| {
                c.unacked
                    .iter()
                    .find(|(_, (m, _))| *m == message)
                    .map(|(seq, _)| *seq)
            })
    }

    /// Finishes the ack of a reference that is not journaled.
    pub fn drop_volatile(&mut self, key: RefKey) {
        debug_assert!(!key.durable, "durable refs are removed by an Acked record");
        self.drop_ref(key.message, key.queue);
    }

    /// Puts settling references back in line for redelivery. Those that were
    /// delivered `max_delivery_attempts` times are left settling and returned:
    /// the caller moves them to the dead-letter address.
    pub fn requeue(&mut self, keys: &[RefKey]) -> Vec<RefKey> {
        let max = self.config.max_delivery_attempts;
        let dla = self.config.dead_letter_address.clone();
        let mut dead = Vec::new();
        for key in keys {
            let Some(q) = self.queues.get_mut(&key.queue) else {
                continue;
            };
            let Some(r) = q.refs.get(&key.message) else {
                continue;
            };
            if max > 0 && r.deliveries >= max && q.address != dla {
                dead.push(*key);
            } else {
                q.make_ready(key.message);
                self.dirty.insert(key.queue);
            }
        }
        dead
    }

    /// Moves a settling non-journaled reference to another queue in memory.
    pub fn move_volatile(&mut self, key: RefKey, to: Id) {
        self.drop_ref(key.message, key.queue);
        self.add_ref(key.message, to, false);
    }

    // -------------------------------------------------------------- delivery

    /// Records bytes queued for a connection (every frame counts).
    pub fn charge(&mut self, conn: ConnId, bytes: usize) {
        if let Some(f) = self.conns.get_mut(&conn) {
            f.unflushed_bytes += bytes;
        }
    }

    /// The driver wrote `bytes` to the connection; deliveries may resume.
    pub fn flushed(&mut self, conn: ConnId, bytes: usize) {
        let max = self.config.connection_outbound_bytes_max;
        let Some(f) = self.conns.get_mut(&conn) else {
            return;
        };
        let was_full = f.unflushed_bytes >= max;
        f.unflushed_bytes = f.unflushed_bytes.saturating_sub(bytes);
        if was_full && f.unflushed_bytes < max {
            for cid in f.subs.values() {
                if let Some(c) = self.consumers.get(cid) {
                    self.dirty.insert(c.queue);
                }
            }
        }
    }

    /// Hands ready messages to consumers with credit, round robin. `send`
    /// turns each delivery into bytes for its connection and returns how many.
    pub fn dispatch(&mut self, send: &mut dyn FnMut(Delivery) -> usize) {
        let out_max = self.config.connection_outbound_bytes_max;
        while let Some(qid) = self.dirty.pop_first() {
            while let Some(q) = self.queues.get_mut(&qid) {
                let Some((&pos, &mid)) = q.ready.first_key_value() else {
                    break;
                };
                // Find the next consumer, round robin, that has credit.
                let mut chosen = None;
                for _ in 0..q.consumers.len() {
                    let Some(cid) = q.consumers.pop_front() else {
                        break;
                    };
                    q.consumers.push_back(cid);
                    let Some(c) = self.consumers.get(&cid) else {
                        continue;
                    };
                    let conn_ok = self
                        .conns
                        .get(&c.conn)
                        .is_some_and(|f| f.unflushed_bytes < out_max);
                    let window_ok = match c.window_bytes {
                        None => true,
                        Some(w) => c.unacked.is_empty() || c.unacked_bytes < w,
                    };
                    if conn_ok && window_ok {
                        chosen = Some(cid);
                        break;
                    }
                }
                let Some(cid) = chosen else {
                    break;
                };
                q.ready.remove(&pos);
                let Some(m) = self.messages.get(&mid) else {
                    q.refs.remove(&mid);
                    continue;
                };
                let Some(c) = self.consumers.get_mut(&cid) else {
                    break;
                };
                let Some(flow) = self.conns.get_mut(&c.conn) else {
                    break;
                };
                let Some(r) = q.refs.get_mut(&mid) else {
                    continue;
                };
                r.deliveries += 1;
                let size = m.body.size_bytes();
                let mut auto_settle_entries = Vec::new();
                let (ack, auto_settled) = if c.ack_mode == AckMode::Auto {
                    r.state = RefState::Settling;
                    let key = RefKey {
                        message: mid,
                        queue: qid,
                        durable: r.durable,
                    };
                    settle_entries_into(Some(m), &key, &mut auto_settle_entries);
                    (None, Some(key))
                } else {
                    let seq = flow.next_ack;
                    flow.next_ack += 1;
                    flow.acks.insert(seq, cid);
                    c.unacked.insert(seq, (mid, size));
                    c.unacked_bytes += size;
                    r.state = RefState::Delivered {
                        consumer: cid,
                        ack_seq: seq,
                    };
                    (Some(seq), None)
                };
                let delivery = Delivery {
                    conn: c.conn,
                    sub_id: c.sub_id.clone(),
                    ack,
                    message_id: mid,
                    queue: qid,
                    message: m.body.clone(),
                    deliveries: r.deliveries,
                    destination: c.destination.clone(),
                    original_address: (m.body.address != q.address).then(|| m.body.address.clone()),
                    auto_settled,
                    auto_settle_entries,
                };
                let conn = c.conn;
                let bytes = send(delivery);
                if let Some(f) = self.conns.get_mut(&conn) {
                    f.unflushed_bytes += bytes;
                }
            }
        }
    }

    /// Subscription ids the connection has open.
    pub fn consumers_of(&self, conn: ConnId) -> Vec<String> {
        self.conns
            .get(&conn)
            .map(|f| f.subs.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Verifies internal bookkeeping; for tests and the simulator.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (mid, m) in &self.messages {
            let refs = self
                .queues
                .values()
                .filter(|q| q.refs.contains_key(mid))
                .count();
            let durable = self
                .queues
                .values()
                .filter(|q| q.refs.get(mid).is_some_and(|r| r.durable))
                .count();
            if refs != m.refs || durable != m.durable_refs {
                return Err(format!(
                    "message {mid}: counted refs {}/{} durable, found {refs}/{durable}",
                    m.refs, m.durable_refs
                ));
            }
        }
        for q in self.queues.values() {
            for (mid, r) in &q.refs {
                if !self.messages.contains_key(mid) {
                    return Err(format!("queue {} references unknown message {mid}", q.name));
                }
                let in_ready = q.ready.get(&r.pos) == Some(mid);
                if in_ready != (r.state == RefState::Ready) {
                    return Err(format!(
                        "queue {} message {mid}: ready index out of sync",
                        q.name
                    ));
                }
            }
            if q.ready.len() > q.refs.len() {
                return Err(format!("queue {}: ready index larger than refs", q.name));
            }
        }
        Ok(())
    }
}
