//! The model's state (topics, transaction coordinators, groups), its
//! configuration and counters, consumer-group requests, and the passing of
//! time that expires members and transactions.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use halyard_core::Millis;

use super::coordinator::{Commit, EpochBump, TransactionCoordinator};
use super::error::KafkaError;
use super::group::{Group, GroupStatus};
use super::log::{LogEntry, Outcome, Partition, Payload};

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

/// Counters for the simulator's summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaStats {
    pub fenced_requests: u64,
    pub compactions: u64,
}

/// The model. One instance stands for the whole Kafka cluster.
#[derive(Clone, Debug)]
pub struct KafkaModel {
    pub config: KafkaConfig,
    pub(super) topics: BTreeMap<String, Vec<Partition>>,
    /// Topics with `cleanup.policy=delete` (the Kafka bridge's): never
    /// compacted, so every record written stays readable.
    pub(super) plain: BTreeSet<String>,
    pub(super) coordinators: BTreeMap<String, TransactionCoordinator>,
    pub(super) outcomes: BTreeMap<u64, Outcome>,
    groups: BTreeMap<String, Group>,
    pub(super) next_producer_id: u64,
    pub(super) next_transaction_instance: u64,
    pub stats: KafkaStats,
    /// Every committed transaction, in commit order (never compacted).
    pub commits: Vec<Commit>,
    /// Every new producer epoch, in order, placed among `commits`.
    pub epoch_bumps: Vec<EpochBump>,
}

impl KafkaModel {
    pub fn new(config: KafkaConfig) -> KafkaModel {
        KafkaModel {
            config,
            topics: BTreeMap::new(),
            plain: BTreeSet::new(),
            coordinators: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            groups: BTreeMap::new(),
            next_producer_id: 1000,
            next_transaction_instance: 1,
            stats: KafkaStats::default(),
            commits: Vec::new(),
            epoch_bumps: Vec::new(),
        }
    }

    pub fn create_topic(&mut self, topic: &str, partitions: u32) {
        self.topics
            .entry(topic.to_string())
            .or_insert_with(|| (0..partitions).map(|_| Partition::default()).collect());
    }

    /// A topic that is never compacted (a Kafka bridge topic).
    pub fn create_plain_topic(&mut self, topic: &str, partitions: u32) {
        self.plain.insert(topic.to_string());
        self.create_topic(topic, partitions);
    }

    /// A non-transactional, non-idempotent write (an outside producer with
    /// `acks=all`): visible to `read_committed` readers at once.
    pub fn produce_plain(
        &mut self,
        now: Millis,
        topic: &str,
        p: u32,
        records: &[(Bytes, Option<Bytes>)],
    ) -> Result<u64, KafkaError> {
        self.tick(now);
        let part = self.partition(topic, p)?;
        let base = part.next_offset;
        for (key, value) in records {
            let offset = part.next_offset;
            part.next_offset += 1;
            part.entries.push(LogEntry {
                offset,
                payload: Payload::Data {
                    key: key.clone(),
                    value: value.clone(),
                    transaction: None,
                },
                cleaned_at: None,
            });
        }
        Ok(base)
    }

    pub(super) fn partition(&mut self, topic: &str, p: u32) -> Result<&mut Partition, KafkaError> {
        self.topics
            .get_mut(topic)
            .and_then(|ps| ps.get_mut(p as usize))
            .ok_or_else(|| KafkaError::UnknownTopic(topic.to_string()))
    }

    // ------------------------------------------------------------- groups

    pub fn join_group(&mut self, now: Millis, group: &str, member: &str) -> GroupStatus {
        self.tick(now);
        self.groups
            .entry(group.to_string())
            .or_default()
            .join(now, member)
    }

    pub fn heartbeat(
        &mut self,
        now: Millis,
        group: &str,
        member: &str,
    ) -> Result<GroupStatus, KafkaError> {
        self.tick(now);
        self.groups
            .entry(group.to_string())
            .or_default()
            .heartbeat(now, member)
    }

    pub fn leave_group(&mut self, now: Millis, group: &str, member: &str) {
        self.tick(now);
        if let Some(g) = self.groups.get_mut(group) {
            g.leave(member);
        }
    }

    pub fn group_status(&self, group: &str) -> Option<GroupStatus> {
        self.groups.get(group).map(Group::status)
    }

    // --------------------------------------------------------------- time

    /// Expires silent members and overdue transactions. Called by every request.
    pub(super) fn tick(&mut self, now: Millis) {
        let session = self.config.session_timeout_ms;
        for g in self.groups.values_mut() {
            g.expire(now, session);
        }
        let timeout = self.config.transaction_timeout_ms;
        let overdue: Vec<String> = self
            .coordinators
            .iter()
            .filter(|(_, c)| {
                c.open
                    .as_ref()
                    .is_some_and(|o| o.started_at + timeout <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in overdue {
            self.abort_open(&id);
            if let Some(c) = self.coordinators.get_mut(&id) {
                c.epoch = c.epoch.wrapping_add(1);
                self.epoch_bumps.push(EpochBump {
                    commits_before: self.commits.len(),
                    producer_id: c.producer_id,
                    epoch: c.epoch,
                    by_open: false,
                });
            }
        }
    }
}
