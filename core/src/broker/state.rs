//! The broker's state: queues, messages, consumers and their flow, and
//! the checks of its invariants. The operations on it live beside it:
//! `replay` (journal entries in), `planning` (where a send goes),
//! `subscriptions`, `settlement`, `delivery`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::config::BrokerConfig;
use super::dups::DupCache;
use super::filter::ConsumerFilter;
use super::queue::{AckMode, ConsumerId, Queue, ReadyKey, RefState};
use super::types::RefKey;
use crate::chunk_map::ChunkMap;
use crate::ids::{ConnId, Id};
use crate::journal::{Entry, Key, QueueDef, Record, Routing};
use crate::message::Message;
use crate::Millis;

#[derive(Clone, Debug)]
pub(crate) struct Consumer {
    pub(crate) conn: ConnId,
    pub(crate) sub_id: String,
    pub(crate) queue: Id,
    pub(crate) ack_mode: AckMode,
    pub(crate) window_bytes: Option<usize>,
    /// A browser: sees messages without taking them (see `browse.rs`).
    pub(crate) browse: bool,
    /// The last message a browser was shown.
    pub(crate) browsed_to: Option<Id>,
    /// Deliveries left (AMQP link credit); `None`: not credit-limited.
    pub(crate) credit: Option<u32>,
    /// The client asked to use up the credit: once nothing more can be
    /// delivered, the rest of it is given back (see `take_drained`).
    pub(crate) drain: bool,
    /// Unacknowledged messages it may hold (STOMP `activemq.prefetchSize`).
    pub(crate) window_messages: Option<usize>,
    pub(crate) filter: ConsumerFilter,
    pub(crate) unacked_bytes: usize,
    /// ack seq -> (message, size), in delivery order for cumulative acks.
    pub(crate) unacked: ChunkMap<u64, (Id, usize)>,
    pub(crate) destination: String,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct ConnFlow {
    pub(crate) subs: BTreeMap<String, ConsumerId>,
    /// Ack number -> its consumer: numbered in delivery order, mostly
    /// settled in it (a `ChunkMap` is cheaper than a B-tree at both ends).
    pub(crate) acks: ChunkMap<u64, ConsumerId>,
    pub(crate) next_ack: u64,
    pub(crate) unflushed_bytes: usize,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Address {
    pub(crate) anycast: Option<Id>,
    pub(crate) multicast: BTreeSet<Id>,
    /// Journaled by an `AddressCreated` record (a multicast send or
    /// subscription to a new name): the address and its routing outlive
    /// its queues, so a later bare name resolves to it.
    pub(crate) declared: Option<Routing>,
}

impl Address {
    pub(crate) fn is_empty(&self) -> bool {
        self.anycast.is_none() && self.multicast.is_empty() && self.declared.is_none()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Msg {
    pub(crate) body: Arc<Message>,
    /// References from any queue.
    pub(crate) refs: usize,
    /// References that are journaled.
    pub(crate) durable_refs: usize,
    /// Still has a live `m/` record in the journal.
    pub(crate) journaled: bool,
    /// Queues whose `r/` key (a `Routed` or `Acked` record) the journal
    /// holds for it: the `r/` keys to tombstone with it.
    pub(crate) ref_keys: Vec<Id>,
    /// The connection that sent it, while this node remembers (for
    /// no-local consumers; a replayed message has none, and connection ids
    /// never repeat, so nothing is lost).
    pub(crate) origin: Option<ConnId>,
    /// `body` is a stand-in (routing and times only); the journal holds
    /// the message (see `paging.rs`).
    pub(crate) paged: bool,
    /// `Message::size_bytes` of the whole message, paged or not (what
    /// reading it back adds).
    pub(crate) size: u32,
}

/// Where a queue stopped at a paged message (see `paging.rs`): the
/// message, and its place in the queue's ready line if it is there.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageFrom {
    pub(crate) message: Id,
    pub(crate) ready: Option<ReadyKey>,
}

/// What a message costs in memory beyond its `Message::size_bytes` while
/// its body is held: the message's own allocation, its entries in the
/// broker's maps and in the journal's index (measured: about 800 bytes of
/// RSS for a 1 KiB STOMP message besides its size). Counted in
/// `bytes_held`, so that `--max-memory-bytes` bounds what the messages
/// really take. A paged message counts nothing: its stand-in is shared
/// with its neighbours, and its bookkeeping (about 330 bytes of RSS, see
/// `paging.rs` and docs/operations.md) is bounded by the disk its journal
/// record takes, not by the memory limit.
pub const MESSAGE_OVERHEAD_BYTES: u64 = 768;

impl Msg {
    /// What this message adds to `Broker::bytes_held`.
    pub(crate) fn held_bytes(&self) -> u64 {
        if self.paged {
            0
        } else {
            self.body.size_bytes() as u64 + MESSAGE_OVERHEAD_BYTES
        }
    }

    pub(crate) fn new(body: Arc<Message>, journaled: bool) -> Msg {
        let size = u32::try_from(body.size_bytes()).unwrap_or(u32::MAX);
        Msg {
            body,
            refs: 0,
            durable_refs: 0,
            journaled,
            ref_keys: Vec::new(),
            origin: None,
            paged: false,
            size,
        }
    }

    pub(crate) fn note_ref_key(&mut self, queue: Id) {
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
pub(crate) fn settle_entries_into(m: Option<&Msg>, key: &RefKey, out: &mut Vec<Entry>) {
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

/// The broker state. See the module docs of [`crate::broker`].
#[derive(Debug)]
pub struct Broker {
    pub(crate) config: BrokerConfig,
    pub(crate) queues: BTreeMap<Id, Queue>,
    pub(crate) names: BTreeMap<String, Id>,
    pub(crate) addresses: BTreeMap<String, Address>,
    pub(crate) messages: ChunkMap<Id, Msg>,
    /// Durable queues minted for a pending send or subscribe but not yet applied.
    pub(crate) planned: BTreeMap<String, QueueDef>,
    pub(crate) consumers: BTreeMap<ConsumerId, Consumer>,
    pub(crate) next_consumer: u64,
    pub(crate) conns: BTreeMap<ConnId, ConnFlow>,
    /// Queues that may be able to deliver.
    pub(crate) dirty: BTreeSet<Id>,
    /// Consumers asked to drain their credit.
    pub(crate) draining: BTreeSet<ConsumerId>,
    /// (connection, subscription) whose drain finished: tell the client.
    pub(crate) drained: Vec<(ConnId, String)>,
    /// Journaled messages no durable queue references any more: tombstone them.
    pub(crate) dead: Vec<(Id, Vec<Id>)>,
    pub(crate) dups: BTreeMap<String, DupCache>,
    /// Scheduled references by delivery time: (at, queue, message).
    pub(crate) scheduled: BTreeSet<(Millis, Id, Id)>,
    /// References found expired (settling now), for the node to move to
    /// the expiry address.
    pub(crate) expired: Vec<RefKey>,
    /// Dispatch left expired references in line (too many at once): the
    /// expiry scan should run soon.
    pub(crate) expiry_backlog: bool,
    /// Where an unfinished expiry scan resumes (this queue and after).
    pub(crate) scan_resume: Option<Id>,
    /// Messages held that carry an expiration (the scan runs only then).
    pub(crate) expiring_messages: usize,
    /// `Message::size_bytes` of every message held, added up (what
    /// `--max-memory-bytes` limits).
    pub(crate) bytes_held: u64,
    /// Duplicate ids evicted from the bounded cache: tombstone their keys.
    pub(crate) dead_dups: Vec<Key>,
    pub(crate) max_epoch: u32,
    /// Reading the journal: references may name queues whose creation record
    /// comes later (compaction keeps only the latest copy of a re-emitted
    /// `QueueCreated`), so they wait here until the load finishes.
    pub(crate) loading: bool,
    pub(crate) orphans: BTreeMap<Id, Vec<Id>>,
    /// Duplicate ids evicted while replaying whose tombstones were not (yet) seen.
    pub(crate) evicted_in_load: BTreeSet<Key>,
    /// The Kafka bridge's journaled read positions: (topic, partition) ->
    /// offset of the next record.
    pub(crate) bridge_positions: BTreeMap<(String, u32), u64>,
    /// Counts queue creations and deletions (the Kafka bridge reads a
    /// topic while its address has subscriptions).
    pub(crate) queues_generation: u64,
    /// The Kafka bridge's outbox (local journal): records not yet in Kafka.
    pub(crate) outbox: BTreeMap<Id, Arc<crate::bridge::OutRecord>>,
    /// Paging (see `paging.rs`): messages held as stand-ins.
    pub(crate) paged_count: usize,
    /// Queues whose dispatch (or a browser) stopped at a paged message ->
    /// where (see `paging::PageFrom`).
    pub(crate) page_wanted: BTreeMap<Id, PageFrom>,
    /// Queues stopped at a paged message that a read asked by another
    /// queue is bringing back: woken by the next answer.
    pub(crate) page_waiting: BTreeSet<Id>,
    /// Paged messages asked for and not yet back -> the queue that asked
    /// and what the message will add to `bytes_held` once back (its size
    /// and `MESSAGE_OVERHEAD_BYTES`).
    pub(crate) page_reading: BTreeMap<Id, (Id, u64)>,
    pub(crate) page_reads_in_flight: usize,
    /// The second of each `page_reading` entry added up.
    pub(crate) page_reading_bytes: u64,
    /// The latest stand-in, shared by the next paged message like it.
    pub(crate) last_stand_in: Option<Arc<Message>>,
}

impl Broker {
    pub fn new(config: BrokerConfig) -> Broker {
        Broker {
            config,
            queues: BTreeMap::new(),
            names: BTreeMap::new(),
            addresses: BTreeMap::new(),
            messages: ChunkMap::new(),
            planned: BTreeMap::new(),
            consumers: BTreeMap::new(),
            next_consumer: 1,
            conns: BTreeMap::new(),
            dirty: BTreeSet::new(),
            draining: BTreeSet::new(),
            drained: Vec::new(),
            dead: Vec::new(),
            dups: BTreeMap::new(),
            scheduled: BTreeSet::new(),
            expired: Vec::new(),
            expiry_backlog: false,
            scan_resume: None,
            expiring_messages: 0,
            bytes_held: 0,
            dead_dups: Vec::new(),
            max_epoch: 0,
            loading: false,
            orphans: BTreeMap::new(),
            evicted_in_load: BTreeSet::new(),
            bridge_positions: BTreeMap::new(),
            queues_generation: 0,
            outbox: BTreeMap::new(),
            paged_count: 0,
            page_wanted: BTreeMap::new(),
            page_waiting: BTreeSet::new(),
            page_reading: BTreeMap::new(),
            page_reads_in_flight: 0,
            page_reading_bytes: 0,
            last_stand_in: None,
        }
    }

    /// The message held under `id`, stored now if new.
    pub(crate) fn msg_entry(&mut self, id: Id, body: &Arc<Message>, journaled: bool) -> &mut Msg {
        let expiring = &mut self.expiring_messages;
        let held = &mut self.bytes_held;
        self.messages.get_or_insert_with(id, || {
            if body.expiration_ms.is_some() {
                *expiring += 1;
            }
            let m = Msg::new(body.clone(), journaled);
            *held += m.held_bytes();
            m
        })
    }

    /// Forgets a message nobody references.
    pub(crate) fn remove_msg(&mut self, id: Id) {
        if let Some(m) = self.messages.remove(&id) {
            if m.body.expiration_ms.is_some() {
                self.expiring_messages = self.expiring_messages.saturating_sub(1);
            }
            let size = m.held_bytes();
            debug_assert!(self.bytes_held >= size, "bytes held would go below 0");
            self.bytes_held = self.bytes_held.saturating_sub(size);
            if m.paged {
                self.paged_count -= 1;
            }
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
        // Counters count what this node does live, not what it replayed.
        for q in self.queues.values_mut() {
            q.counters = Default::default();
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

    /// The message held under `id`; a paged one's stand-in has no body,
    /// headers or properties (see [`Broker::is_paged`]).
    pub fn message(&self, id: Id) -> Option<&Arc<Message>> {
        self.messages.get(&id).map(|m| &m.body)
    }

    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// The messages' sizes added up (`Message::size_bytes`: bodies,
    /// properties, headers), what `--max-memory-bytes` limits.
    pub fn bytes_held(&self) -> u64 {
        self.bytes_held
    }

    /// The Kafka bridge's journaled read positions: (topic, partition) ->
    /// offset of the next record to read.
    pub fn bridge_positions(&self) -> &BTreeMap<(String, u32), u64> {
        &self.bridge_positions
    }

    /// The Kafka bridge's outbox: records still to forward, by message id.
    pub fn outbox(&self) -> &BTreeMap<Id, Arc<crate::bridge::OutRecord>> {
        &self.outbox
    }

    /// Changes whenever a queue is created or deleted.
    pub fn queues_generation(&self) -> u64 {
        self.queues_generation
    }

    /// Addresses with at least one multicast queue (a subscription).
    pub fn addresses_with_subscriptions(&self) -> impl Iterator<Item = &str> {
        self.addresses
            .iter()
            .filter(|(_, a)| !a.multicast.is_empty())
            .map(|(name, _)| name.as_str())
    }

    /// Routing of an existing address, for bare destination names.
    pub fn address_routing(&self, address: &str) -> Option<Routing> {
        let a = self.addresses.get(address)?;
        if a.anycast.is_some() {
            Some(Routing::Anycast)
        } else if !a.multicast.is_empty() {
            Some(Routing::Multicast)
        } else {
            a.declared
        }
    }

    /// Verifies internal bookkeeping; for tests and the simulator.
    pub fn check_invariants(&self) -> Result<(), String> {
        let bytes: u64 = self.messages.values().map(Msg::held_bytes).sum();
        if bytes != self.bytes_held {
            return Err(format!(
                "bytes held counted {}, the messages add up to {bytes}",
                self.bytes_held
            ));
        }
        // One pass over the queues' refs (the simulator runs this after every
        // step, so it must not cost messages x queues).
        let mut found: BTreeMap<Id, (usize, usize)> = BTreeMap::new();
        for q in self.queues.values() {
            for (mid, r) in &q.refs {
                let e = found.entry(*mid).or_default();
                e.0 += 1;
                e.1 += usize::from(r.durable);
            }
        }
        for (mid, m) in &self.messages {
            let (refs, durable) = found.get(mid).copied().unwrap_or_default();
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
                let ready = r.state == RefState::Ready;
                let in_ready = q.ready.get(&r.ready_key()) == Some(mid);
                let in_expiring = r
                    .expires_at
                    .is_some_and(|t| q.expiring.contains(&(t, *mid)));
                if in_ready != ready || in_expiring != (ready && r.expires_at.is_some()) {
                    return Err(format!(
                        "queue {} message {mid}: ready or expiry index out of sync",
                        q.name
                    ));
                }
                if let RefState::Scheduled { at } = r.state {
                    if !self.scheduled.contains(&(at, q.id, *mid)) {
                        return Err(format!(
                            "queue {} message {mid}: scheduled but not in the scheduled index",
                            q.name
                        ));
                    }
                }
            }
            if q.ready.len() > q.refs.len() || q.expiring.len() > q.ready.len() {
                return Err(format!(
                    "queue {}: ready or expiry index larger than refs",
                    q.name
                ));
            }
        }
        for (at, qid, mid) in &self.scheduled {
            let state = self
                .queues
                .get(qid)
                .and_then(|q| q.refs.get(mid))
                .map(|r| r.state);
            if state != Some(RefState::Scheduled { at: *at }) {
                return Err(format!(
                    "scheduled index names message {mid} in queue {qid}, which is {state:?}"
                ));
            }
        }
        let expiring = self
            .messages
            .values()
            .filter(|m| m.body.expiration_ms.is_some())
            .count();
        if expiring != self.expiring_messages {
            return Err(format!(
                "{expiring} messages carry an expiration, counted {}",
                self.expiring_messages
            ));
        }
        let paged = self.messages.values().filter(|m| m.paged).count();
        if paged != self.paged_count {
            return Err(format!(
                "{paged} messages are paged, counted {}",
                self.paged_count
            ));
        }
        // A paged message's body is in the journal only: the journal must
        // still hold it (see `paging.rs`). While loading, a message whose
        // tombstone was read is dead and goes at `finish_load`.
        if let Some((id, _)) = self
            .messages
            .iter()
            .find(|(_, m)| m.paged && !m.journaled && !self.loading)
        {
            return Err(format!("paged message {id} is no longer journaled"));
        }
        Ok(())
    }
}
