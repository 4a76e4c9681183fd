//! A model of the parts of Apache Kafka Halyard relies on.
//!
//! - Partitions: append-only logs with offsets, a log start offset that
//!   compaction can move, and the last stable offset (LSO) that
//!   `read_committed` readers stop at.
//! - Transactions: a coordinator per `transactional.id` with a producer id
//!   and an epoch. `init_producer_id` aborts any open transaction of the old
//!   epoch and bumps the epoch, so every later request of the old producer is
//!   fenced (`ProducerFenced`). Produce is idempotent per (producer id,
//!   epoch, sequence). `end_txn` writes commit or abort markers; a retried
//!   `end_txn` with the same outcome succeeds. Transactions open longer than
//!   `transaction_timeout_ms` are aborted by the coordinator, which bumps the
//!   epoch (as Kafka does since KIP-360).
//! - `read_committed` fetches return only committed data below the LSO;
//!   aborted data is never returned.
//! - Consumer groups: members join, heartbeat and leave; a member whose
//!   last heartbeat is older than `session_timeout_ms` is expelled and the
//!   generation moves on. One-partition lock groups assign partition 0
//!   stickily: its holder keeps it while it is a member; a free partition goes
//!   to the member whose name sorts first (Halyard names a failback primary
//!   so that it sorts first).
//! - Compaction of a prefix (never past the LSO): an older record is removed
//!   when a later one with the same key exists below the cleaning point;
//!   aborted data is removed; tombstones and markers survive one cleaning and
//!   are removed `tombstone_retention_ms` after it (Kafka's
//!   `delete.retention.ms`).
//!
//! The model is pure: time comes in as `now`, randomness from the caller.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;

use crate::rng::Rng;

pub type Millis = u64;

#[derive(Clone, Debug)]
pub struct KafkaConfig {
    pub session_timeout_ms: u64,
    pub transaction_timeout_ms: u64,
    pub tombstone_retention_ms: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            session_timeout_ms: 3_000,
            transaction_timeout_ms: 20_000,
            tombstone_retention_ms: 5_000,
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KafkaError {
    /// A newer producer with the same transactional id exists (Kafka:
    /// PRODUCER_FENCED / INVALID_PRODUCER_EPOCH).
    #[error("producer fenced: epoch {stale} is older than {current}")]
    ProducerFenced { stale: u16, current: u16 },
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(&'static str),
    #[error("unknown producer (init_producer_id first)")]
    UnknownProducer,
    #[error("unknown member {0} (expired or left)")]
    UnknownMember(String),
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("out of order sequence {got}, expected {expected}")]
    OutOfOrderSequence { got: u64, expected: u64 },
}

/// Who wrote a record, remembered for the simulator's checker only.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Writer {
    pub node: String,
    pub epoch: u32,
}

#[derive(Clone, Debug)]
enum Payload {
    Data {
        key: Bytes,
        value: Option<Bytes>,
        /// Transaction instance, or None for a non-transactional write.
        txn: Option<u64>,
        /// Shared by every record of the batch.
        writer: Option<Arc<Writer>>,
    },
    /// A commit or abort marker (its outcome is kept in `outcomes`).
    Marker,
}

#[derive(Clone, Debug)]
struct LogEntry {
    offset: u64,
    payload: Payload,
    /// When a cleaning first passed over this tombstone or marker.
    cleaned_at: Option<Millis>,
}

#[derive(Clone, Debug, Default)]
struct Partition {
    entries: Vec<LogEntry>,
    next_offset: u64,
    /// Transaction instances open on this partition, with their first offset.
    open: BTreeMap<u64, u64>,
    /// Idempotence: producer id -> (epoch, last sequence, base offset of that batch).
    last_seq: BTreeMap<u64, (u16, u64, u64)>,
}

impl Partition {
    fn lso(&self) -> u64 {
        self.open
            .values()
            .copied()
            .min()
            .unwrap_or(self.next_offset)
    }
    fn log_start(&self) -> u64 {
        self.entries.first().map_or(self.next_offset, |e| e.offset)
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Open,
    Committed,
    Aborted,
}

#[derive(Clone, Debug)]
struct OpenTxn {
    instance: u64,
    partitions: BTreeSet<(String, u32)>,
    started_at: Millis,
    writer: Option<Writer>,
}

#[derive(Clone, Debug)]
struct TxnCoordinator {
    producer_id: u64,
    epoch: u16,
    open: Option<OpenTxn>,
    last: Option<(u64, bool)>,
}

#[derive(Clone, Debug)]
struct Member {
    last_heartbeat: Millis,
}

#[derive(Clone, Debug, Default)]
struct Group {
    members: BTreeMap<String, Member>,
    generation: u64,
    holder: Option<String>,
}

/// What a member learns from a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    pub generation: u64,
    pub holder: Option<String>,
    pub members: Vec<String>,
}

/// A record as a `read_committed` consumer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub offset: u64,
    pub key: Bytes,
    pub value: Option<Bytes>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchResult {
    pub records: Vec<Fetched>,
    /// Where the next fetch starts.
    pub next_offset: u64,
    /// The end a `read_committed` reader can reach now (the LSO).
    pub end_offset: u64,
}

/// Counters for the simulator's summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaStats {
    pub committed_txns: u64,
    pub aborted_txns: u64,
    pub fenced_requests: u64,
    pub compactions: u64,
    pub records_compacted: u64,
    pub expired_members: u64,
    pub timed_out_txns: u64,
}

/// The model. One instance stands for the whole Kafka cluster.
#[derive(Clone, Debug)]
pub struct KafkaModel {
    pub config: KafkaConfig,
    topics: BTreeMap<String, Vec<Partition>>,
    txns: BTreeMap<String, TxnCoordinator>,
    outcomes: BTreeMap<u64, Outcome>,
    groups: BTreeMap<String, Group>,
    next_producer_id: u64,
    next_txn_instance: u64,
    pub stats: KafkaStats,
    /// Writer of every committed transaction, in commit order (never compacted).
    pub commits: Vec<Writer>,
}

impl KafkaModel {
    pub fn new(config: KafkaConfig) -> KafkaModel {
        KafkaModel {
            config,
            topics: BTreeMap::new(),
            txns: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            groups: BTreeMap::new(),
            next_producer_id: 1000,
            next_txn_instance: 1,
            stats: KafkaStats::default(),
            commits: Vec::new(),
        }
    }

    pub fn create_topic(&mut self, topic: &str, partitions: u32) {
        self.topics
            .entry(topic.to_string())
            .or_insert_with(|| (0..partitions).map(|_| Partition::default()).collect());
    }

    fn partition(&mut self, topic: &str, p: u32) -> Result<&mut Partition, KafkaError> {
        self.topics
            .get_mut(topic)
            .and_then(|ps| ps.get_mut(p as usize))
            .ok_or_else(|| KafkaError::UnknownTopic(topic.to_string()))
    }

    // ------------------------------------------------------- transactions

    /// `initTransactions()`: fence older producers of this transactional id.
    pub fn init_producer_id(&mut self, now: Millis, txn_id: &str) -> (u64, u16) {
        self.tick(now);
        if !self.txns.contains_key(txn_id) {
            let pid = self.next_producer_id;
            self.next_producer_id += 1;
            self.txns.insert(
                txn_id.to_string(),
                TxnCoordinator {
                    producer_id: pid,
                    epoch: 0,
                    open: None,
                    last: None,
                },
            );
            return (pid, 0);
        }
        self.abort_open(txn_id);
        let c = self.txns.get_mut(txn_id).expect("coordinator exists");
        c.epoch = c.epoch.wrapping_add(1);
        (c.producer_id, c.epoch)
    }

    fn check_epoch(&mut self, txn_id: &str, pid: u64, epoch: u16) -> Result<(), KafkaError> {
        let c = self.txns.get(txn_id).ok_or(KafkaError::UnknownProducer)?;
        if c.producer_id != pid || c.epoch != epoch {
            self.stats.fenced_requests += 1;
            return Err(KafkaError::ProducerFenced {
                stale: epoch,
                current: c.epoch,
            });
        }
        Ok(())
    }

    /// A transactional produce (with the implicit AddPartitionsToTxn).
    #[allow(clippy::too_many_arguments)]
    pub fn produce(
        &mut self,
        now: Millis,
        txn_id: &str,
        pid: u64,
        epoch: u16,
        seq: u64,
        topic: &str,
        p: u32,
        records: &[(Bytes, Option<Bytes>)],
        writer: Option<Writer>,
    ) -> Result<u64, KafkaError> {
        self.tick(now);
        self.check_epoch(txn_id, pid, epoch)?;
        self.partition(topic, p)?;
        let instance = {
            let next = &mut self.next_txn_instance;
            let c = self.txns.get_mut(txn_id).expect("checked");
            let open = c.open.get_or_insert_with(|| {
                let i = *next;
                *next += 1;
                OpenTxn {
                    instance: i,
                    partitions: BTreeSet::new(),
                    started_at: now,
                    writer: None,
                }
            });
            open.partitions.insert((topic.to_string(), p));
            if writer.is_some() {
                open.writer = writer.clone();
            }
            open.instance
        };
        self.outcomes.entry(instance).or_insert(Outcome::Open);
        let part = self.partition(topic, p)?;
        // Idempotence: a retried batch is not appended twice.
        if let Some((e, last, base)) = part.last_seq.get(&pid).copied() {
            if e == epoch && seq == last {
                return Ok(base);
            }
            if e == epoch && seq != last + 1 {
                return Err(KafkaError::OutOfOrderSequence {
                    got: seq,
                    expected: last + 1,
                });
            }
        }
        let base = part.next_offset;
        part.open.entry(instance).or_insert(base);
        let writer = writer.map(Arc::new);
        for (key, value) in records {
            let offset = part.next_offset;
            part.next_offset += 1;
            part.entries.push(LogEntry {
                offset,
                payload: Payload::Data {
                    key: key.clone(),
                    value: value.clone(),
                    txn: Some(instance),
                    writer: writer.clone(),
                },
                cleaned_at: None,
            });
        }
        part.last_seq.insert(pid, (epoch, seq, base));
        Ok(base)
    }

    /// Commit or abort the open transaction.
    pub fn end_txn(
        &mut self,
        now: Millis,
        txn_id: &str,
        pid: u64,
        epoch: u16,
        commit: bool,
    ) -> Result<(), KafkaError> {
        self.tick(now);
        self.check_epoch(txn_id, pid, epoch)?;
        let c = self.txns.get_mut(txn_id).expect("checked");
        match c.open.take() {
            Some(open) => {
                c.last = Some((open.instance, commit));
                self.finish(open, commit);
                Ok(())
            }
            // A retry after the first attempt's reply was lost.
            None => match c.last {
                Some((_, outcome)) if outcome == commit => Ok(()),
                _ => Err(KafkaError::InvalidTxnState("no transaction in progress")),
            },
        }
    }

    fn finish(&mut self, open: OpenTxn, commit: bool) {
        self.outcomes.insert(
            open.instance,
            if commit {
                Outcome::Committed
            } else {
                Outcome::Aborted
            },
        );
        if commit {
            self.stats.committed_txns += 1;
            if let Some(w) = &open.writer {
                self.commits.push(w.clone());
            }
        } else {
            self.stats.aborted_txns += 1;
        }
        for (topic, p) in open.partitions {
            if let Ok(part) = self.partition(&topic, p) {
                let offset = part.next_offset;
                part.next_offset += 1;
                part.entries.push(LogEntry {
                    offset,
                    payload: Payload::Marker,
                    cleaned_at: None,
                });
                part.open.remove(&open.instance);
            }
        }
    }

    fn abort_open(&mut self, txn_id: &str) {
        if let Some(open) = self.txns.get_mut(txn_id).and_then(|c| c.open.take()) {
            self.finish(open, false);
        }
    }

    // -------------------------------------------------------------- reads

    /// A `read_committed` fetch of up to `max` records from `offset`.
    pub fn fetch_committed(
        &mut self,
        now: Millis,
        topic: &str,
        p: u32,
        offset: u64,
        max: usize,
    ) -> Result<FetchResult, KafkaError> {
        self.tick(now);
        let outcomes = &self.outcomes;
        let part = self
            .topics
            .get(topic)
            .and_then(|ps| ps.get(p as usize))
            .ok_or_else(|| KafkaError::UnknownTopic(topic.to_string()))?;
        let lso = part.lso();
        let start = offset.max(part.log_start());
        let mut records = Vec::new();
        let mut next = start;
        let from = part.entries.partition_point(|e| e.offset < start);
        for e in &part.entries[from..] {
            if e.offset >= lso || records.len() >= max {
                break;
            }
            next = e.offset + 1;
            if let Payload::Data {
                key, value, txn, ..
            } = &e.payload
            {
                let visible = match txn {
                    None => true,
                    Some(t) => outcomes.get(t) == Some(&Outcome::Committed),
                };
                if visible {
                    records.push(Fetched {
                        offset: e.offset,
                        key: key.clone(),
                        value: value.clone(),
                    });
                }
            }
        }
        if records.len() < max {
            next = next.max(lso.min(part.next_offset)).max(start);
        }
        Ok(FetchResult {
            records,
            next_offset: next,
            end_offset: lso,
        })
    }

    /// The offset a `read_committed` reader must reach to have read everything committed.
    pub fn end_offset_committed(
        &mut self,
        now: Millis,
        topic: &str,
        p: u32,
    ) -> Result<u64, KafkaError> {
        self.tick(now);
        Ok(self.partition(topic, p)?.lso())
    }

    /// Every committed record with who wrote it (for the checker).
    pub fn committed_writers(&self, topic: &str, p: u32) -> Vec<(u64, Writer)> {
        let Some(part) = self.topics.get(topic).and_then(|ps| ps.get(p as usize)) else {
            return Vec::new();
        };
        part.entries
            .iter()
            .filter_map(|e| match &e.payload {
                Payload::Data {
                    txn: Some(t),
                    writer: Some(w),
                    ..
                } if self.outcomes.get(t) == Some(&Outcome::Committed) => {
                    Some((e.offset, Writer::clone(w)))
                }
                _ => None,
            })
            .collect()
    }

    /// The latest committed value of `key` (what a reader of the tail finds).
    pub fn latest_committed(&self, topic: &str, p: u32, key: &[u8]) -> Option<Bytes> {
        let part = self.topics.get(topic).and_then(|ps| ps.get(p as usize))?;
        part.entries.iter().rev().find_map(|e| match &e.payload {
            Payload::Data {
                key: k, value, txn, ..
            } if &k[..] == key
                && txn.is_none_or(|t| self.outcomes.get(&t) == Some(&Outcome::Committed)) =>
            {
                value.clone()
            }
            _ => None,
        })
    }

    /// A readable listing of a partition, for debugging a seed.
    pub fn dump(&self, topic: &str, p: u32) -> Vec<String> {
        let Some(part) = self.topics.get(topic).and_then(|ps| ps.get(p as usize)) else {
            return Vec::new();
        };
        part.entries
            .iter()
            .map(|e| match &e.payload {
                Payload::Data {
                    key,
                    value,
                    txn,
                    writer,
                } => format!(
                    "{} {:?} {} {:?} {:?} {}",
                    e.offset,
                    txn.map(|t| self.outcomes.get(&t).copied()),
                    String::from_utf8_lossy(key),
                    writer,
                    value.as_ref().map(|v| v.len()),
                    value
                        .as_ref()
                        .map(|v| String::from_utf8_lossy(v)
                            .chars()
                            .filter(|c| !c.is_control())
                            .collect::<String>())
                        .unwrap_or_default()
                ),
                Payload::Marker => format!("{} marker", e.offset),
            })
            .collect()
    }

    /// Records physically present (all kinds), for tests of compaction.
    pub fn log_len(&self, topic: &str, p: u32) -> usize {
        self.topics
            .get(topic)
            .and_then(|ps| ps.get(p as usize))
            .map_or(0, |part| part.entries.len())
    }

    // ------------------------------------------------------------- groups

    pub fn join_group(&mut self, now: Millis, group: &str, member: &str) -> GroupStatus {
        self.tick(now);
        let g = self.groups.entry(group.to_string()).or_default();
        if g.members
            .insert(
                member.to_string(),
                Member {
                    last_heartbeat: now,
                },
            )
            .is_none()
        {
            g.generation += 1;
        }
        Self::assign(g);
        Self::status(g)
    }

    pub fn heartbeat(
        &mut self,
        now: Millis,
        group: &str,
        member: &str,
    ) -> Result<GroupStatus, KafkaError> {
        self.tick(now);
        let g = self.groups.entry(group.to_string()).or_default();
        match g.members.get_mut(member) {
            None => Err(KafkaError::UnknownMember(member.to_string())),
            Some(m) => {
                m.last_heartbeat = now;
                Ok(Self::status(g))
            }
        }
    }

    pub fn leave_group(&mut self, now: Millis, group: &str, member: &str) {
        self.tick(now);
        if let Some(g) = self.groups.get_mut(group) {
            if g.members.remove(member).is_some() {
                g.generation += 1;
                if g.holder.as_deref() == Some(member) {
                    g.holder = None;
                }
                Self::assign(g);
            }
        }
    }

    pub fn group_status(&self, group: &str) -> Option<GroupStatus> {
        self.groups.get(group).map(Self::status)
    }

    fn assign(g: &mut Group) {
        if g.holder.is_none() {
            g.holder = g.members.keys().next().cloned();
            if g.holder.is_some() {
                g.generation += 1;
            }
        }
    }

    fn status(g: &Group) -> GroupStatus {
        GroupStatus {
            generation: g.generation,
            holder: g.holder.clone(),
            members: g.members.keys().cloned().collect(),
        }
    }

    // --------------------------------------------------------------- time

    /// Expires silent members and overdue transactions. Called by every request.
    pub fn tick(&mut self, now: Millis) {
        let session = self.config.session_timeout_ms;
        for g in self.groups.values_mut() {
            let before = g.members.len();
            g.members.retain(|_, m| m.last_heartbeat + session > now);
            let expired = before - g.members.len();
            if expired > 0 {
                self.stats.expired_members += expired as u64;
                g.generation += 1;
                if g.holder
                    .as_ref()
                    .is_some_and(|h| !g.members.contains_key(h))
                {
                    g.holder = None;
                }
                Self::assign(g);
            }
        }
        let timeout = self.config.transaction_timeout_ms;
        let overdue: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, c)| {
                c.open
                    .as_ref()
                    .is_some_and(|o| o.started_at + timeout <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in overdue {
            self.stats.timed_out_txns += 1;
            self.abort_open(&id);
            if let Some(c) = self.txns.get_mut(&id) {
                c.epoch = c.epoch.wrapping_add(1);
            }
        }
    }

    /// Runs the log cleaner over a random prefix of every partition.
    pub fn compact(&mut self, now: Millis, rng: &mut Rng) {
        self.tick(now);
        let retention = self.config.tombstone_retention_ms;
        let outcomes = &self.outcomes;
        let committed =
            |txn: &Option<u64>| txn.is_none_or(|t| outcomes.get(&t) == Some(&Outcome::Committed));
        let aborted =
            |txn: &Option<u64>| txn.is_some_and(|t| outcomes.get(&t) == Some(&Outcome::Aborted));
        let mut removed_total = 0u64;
        for parts in self.topics.values_mut() {
            for part in parts.iter_mut() {
                let lso = part.lso();
                let start = part.log_start();
                if lso <= start {
                    continue;
                }
                let clean_point = rng.range(start, lso);
                // Entries are in offset order: those below the cleaning point first.
                let below = part.entries.partition_point(|e| e.offset < clean_point);
                // Latest offset of each key below the cleaning point (only
                // looked up, never iterated, so a HashMap keeps runs deterministic).
                let mut latest: HashMap<&[u8], u64, BuildHasherDefault<FxHasher>> =
                    HashMap::with_capacity_and_hasher(below, Default::default());
                for e in &part.entries[..below] {
                    if let Payload::Data { key, txn, .. } = &e.payload {
                        if committed(txn) {
                            latest.insert(&key[..], e.offset);
                        }
                    }
                }
                // Decide first (the map borrows the log), then remove.
                let superseded: Vec<bool> = part.entries[..below]
                    .iter()
                    .map(|e| match &e.payload {
                        Payload::Data { key, txn, .. } => {
                            aborted(txn) || latest.get(&key[..]).is_some_and(|l| *l > e.offset)
                        }
                        Payload::Marker => false,
                    })
                    .collect();
                drop(latest);
                let mut superseded = superseded.into_iter();
                let before = part.entries.len();
                part.entries.retain_mut(|e| {
                    // Past the cleaning point the iterator is exhausted.
                    if superseded.next().unwrap_or(false) {
                        return false;
                    }
                    if e.offset >= clean_point {
                        return true;
                    }
                    match &e.payload {
                        Payload::Data { value: None, .. } | Payload::Marker => {
                            Self::survives_retention(e, now, retention)
                        }
                        Payload::Data { .. } => true,
                    }
                });
                removed_total += (before - part.entries.len()) as u64;
            }
        }
        self.stats.compactions += 1;
        self.stats.records_compacted += removed_total;
    }

    fn survives_retention(e: &mut LogEntry, now: Millis, retention: u64) -> bool {
        match e.cleaned_at {
            None => {
                e.cleaned_at = Some(now);
                true
            }
            Some(t) => now < t + retention,
        }
    }
}

/// The Fx hash (as in rustc): fast on short keys, deterministic. Only used
/// for maps that are looked up, never iterated.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl FxHasher {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "journal";

    fn rec(k: &str, v: Option<&str>) -> (Bytes, Option<Bytes>) {
        (
            Bytes::copy_from_slice(k.as_bytes()),
            v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        )
    }

    fn visible(k: &mut KafkaModel, now: Millis) -> Vec<(String, Option<String>)> {
        k.fetch_committed(now, T, 0, 0, 10_000)
            .unwrap()
            .records
            .into_iter()
            .map(|r| {
                (
                    String::from_utf8_lossy(&r.key).into_owned(),
                    r.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                )
            })
            .collect()
    }

    fn model() -> KafkaModel {
        let mut k = KafkaModel::new(KafkaConfig::default());
        k.create_topic(T, 1);
        k
    }

    #[test]
    fn init_producer_id_fences_the_old_producer() {
        let mut k = model();
        let (pid, e0) = k.init_producer_id(0, "tx");
        k.produce(1, "tx", pid, e0, 0, T, 0, &[rec("a", Some("1"))], None)
            .unwrap();
        k.end_txn(2, "tx", pid, e0, true).unwrap();
        let (pid2, e1) = k.init_producer_id(3, "tx");
        assert_eq!(pid2, pid);
        assert_eq!(e1, e0 + 1);
        assert!(matches!(
            k.produce(4, "tx", pid, e0, 1, T, 0, &[rec("b", Some("2"))], None),
            Err(KafkaError::ProducerFenced { .. })
        ));
        assert!(matches!(
            k.end_txn(5, "tx", pid, e0, true),
            Err(KafkaError::ProducerFenced { .. })
        ));
        assert_eq!(visible(&mut k, 6), vec![("a".into(), Some("1".into()))]);
    }

    #[test]
    fn init_aborts_the_open_transaction_of_the_old_epoch() {
        let mut k = model();
        let (pid, e0) = k.init_producer_id(0, "tx");
        k.produce(1, "tx", pid, e0, 0, T, 0, &[rec("a", Some("1"))], None)
            .unwrap();
        // Uncommitted data holds the LSO back.
        assert_eq!(k.end_offset_committed(2, T, 0).unwrap(), 0);
        k.init_producer_id(3, "tx");
        assert!(visible(&mut k, 4).is_empty(), "aborted data visible");
        assert_eq!(
            k.end_offset_committed(4, T, 0).unwrap(),
            2,
            "data + abort marker"
        );
    }

    #[test]
    fn read_committed_hides_aborted_and_open_transactions() {
        let mut k = model();
        let (pid, e) = k.init_producer_id(0, "tx");
        k.produce(1, "tx", pid, e, 0, T, 0, &[rec("a", Some("1"))], None)
            .unwrap();
        k.end_txn(2, "tx", pid, e, false).unwrap();
        k.produce(3, "tx", pid, e, 1, T, 0, &[rec("b", Some("2"))], None)
            .unwrap();
        k.end_txn(4, "tx", pid, e, true).unwrap();
        k.produce(5, "tx", pid, e, 2, T, 0, &[rec("c", Some("3"))], None)
            .unwrap();
        assert_eq!(visible(&mut k, 6), vec![("b".into(), Some("2".into()))]);
    }

    #[test]
    fn produce_is_idempotent_and_end_txn_retry_succeeds() {
        let mut k = model();
        let (pid, e) = k.init_producer_id(0, "tx");
        let a = k
            .produce(1, "tx", pid, e, 0, T, 0, &[rec("a", Some("1"))], None)
            .unwrap();
        let b = k
            .produce(2, "tx", pid, e, 0, T, 0, &[rec("a", Some("1"))], None)
            .unwrap();
        assert_eq!(a, b);
        k.end_txn(3, "tx", pid, e, true).unwrap();
        k.end_txn(4, "tx", pid, e, true).unwrap();
        assert!(k.end_txn(5, "tx", pid, e, false).is_err());
        assert_eq!(visible(&mut k, 6).len(), 1);
    }

    #[test]
    fn overdue_transaction_is_aborted_and_fenced() {
        let mut k = model();
        let (pid, e) = k.init_producer_id(0, "tx");
        k.produce(1, "tx", pid, e, 0, T, 0, &[rec("a", Some("1"))], None)
            .unwrap();
        let late = k.config.transaction_timeout_ms + 10;
        assert!(matches!(
            k.end_txn(late, "tx", pid, e, true),
            Err(KafkaError::ProducerFenced { .. })
        ));
        assert!(visible(&mut k, late).is_empty());
    }

    #[test]
    fn compaction_keeps_the_latest_value_per_key_and_drops_tombstones_later() {
        let mut k = model();
        let (pid, e) = k.init_producer_id(0, "tx");
        let recs = [
            rec("a", Some("1")),
            rec("b", Some("1")),
            rec("a", Some("2")),
            rec("b", None),
        ];
        k.produce(1, "tx", pid, e, 0, T, 0, &recs, None).unwrap();
        k.end_txn(2, "tx", pid, e, true).unwrap();
        let (pid2, e2) = (pid, e);
        k.produce(3, "tx", pid2, e2, 1, T, 0, &[rec("c", Some("1"))], None)
            .unwrap();
        k.end_txn(4, "tx", pid2, e2, true).unwrap();
        let before = visible(&mut k, 5);
        // Clean everything below the LSO, several times.
        let mut rng = Rng::new(1);
        for i in 0..50 {
            k.compact(10 + i, &mut rng);
        }
        let mid = visible(&mut k, 100);
        assert_eq!(
            mid,
            vec![
                ("a".into(), Some("2".into())),
                ("b".into(), None),
                ("c".into(), Some("1".into()))
            ],
            "before: {before:?}"
        );
        k.compact(100 + k.config.tombstone_retention_ms, &mut rng);
        let mut after = visible(&mut k, 20_000);
        after.retain(|(_, v)| v.is_some());
        assert_eq!(
            after,
            vec![
                ("a".into(), Some("2".into())),
                ("c".into(), Some("1".into()))
            ]
        );
    }

    #[test]
    fn compaction_never_passes_an_open_transaction() {
        let mut k = model();
        let (pid, e) = k.init_producer_id(0, "tx");
        k.produce(
            1,
            "tx",
            pid,
            e,
            0,
            T,
            0,
            &[rec("a", Some("1")), rec("a", Some("2"))],
            None,
        )
        .unwrap();
        let mut rng = Rng::new(3);
        for i in 0..20 {
            k.compact(2 + i, &mut rng);
        }
        assert_eq!(k.log_len(T, 0), 2, "cleaned past the LSO");
        k.end_txn(30, "tx", pid, e, true).unwrap();
        assert_eq!(
            visible(&mut k, 31),
            vec![
                ("a".into(), Some("1".into())),
                ("a".into(), Some("2".into()))
            ]
        );
    }

    #[test]
    fn silent_member_loses_the_lock_and_the_next_member_gets_it() {
        let mut k = model();
        let s = k.join_group(0, "lock", "0-primary");
        assert_eq!(s.holder.as_deref(), Some("0-primary"));
        let s = k.join_group(10, "lock", "1-backup");
        assert_eq!(s.holder.as_deref(), Some("0-primary"), "sticky");
        let session = k.config.session_timeout_ms;
        for t in (500..session + 1000).step_by(500) {
            k.heartbeat(t, "lock", "1-backup").unwrap();
        }
        let s = k.heartbeat(session + 1000, "lock", "1-backup").unwrap();
        assert_eq!(s.holder.as_deref(), Some("1-backup"));
        assert!(matches!(
            k.heartbeat(session + 1001, "lock", "0-primary"),
            Err(KafkaError::UnknownMember(_))
        ));
        // The primary returns: the backup keeps the lock until it leaves.
        k.join_group(session + 1002, "lock", "0-primary");
        assert_eq!(
            k.group_status("lock").unwrap().holder.as_deref(),
            Some("1-backup")
        );
        k.leave_group(session + 1003, "lock", "1-backup");
        assert_eq!(
            k.group_status("lock").unwrap().holder.as_deref(),
            Some("0-primary")
        );
    }
}
