//! Transactional writes: `init_producer_id` (fencing), produce with the
//! implicit AddPartitionsToTxn, and commit or abort with markers.

use std::collections::BTreeSet;

use bytes::Bytes;
use halyard_core::Millis;

use super::coordinator::{Commit, EpochBump, OpenTransaction, TransactionCoordinator, Writer};
use super::error::KafkaError;
use super::log::{LogEntry, Outcome, Payload};
use super::model::KafkaModel;

impl KafkaModel {
    /// `initTransactions()`: fence older producers of this transactional id.
    pub fn init_producer_id(&mut self, now: Millis, txn_id: &str) -> (u64, u16) {
        self.tick(now);
        if !self.coordinators.contains_key(txn_id) {
            let pid = self.next_producer_id;
            self.next_producer_id += 1;
            self.coordinators.insert(
                txn_id.to_string(),
                TransactionCoordinator {
                    producer_id: pid,
                    epoch: 0,
                    open: None,
                    last: None,
                },
            );
            self.note_epoch(pid, 0);
            return (pid, 0);
        }
        self.abort_open(txn_id);
        let c = self
            .coordinators
            .get_mut(txn_id)
            .expect("coordinator exists");
        c.epoch = c.epoch.wrapping_add(1);
        let (pid, epoch) = (c.producer_id, c.epoch);
        self.note_epoch(pid, epoch);
        (pid, epoch)
    }

    /// Logs an open's new producer epoch for the checker.
    fn note_epoch(&mut self, producer_id: u64, epoch: u16) {
        self.epoch_bumps.push(EpochBump {
            commits_before: self.commits.len(),
            producer_id,
            epoch,
            by_open: true,
        });
    }

    fn check_epoch(&mut self, txn_id: &str, pid: u64, epoch: u16) -> Result<(), KafkaError> {
        let c = self
            .coordinators
            .get(txn_id)
            .ok_or(KafkaError::UnknownProducer)?;
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
            let next = &mut self.next_transaction_instance;
            let c = self.coordinators.get_mut(txn_id).expect("checked");
            let open = c.open.get_or_insert_with(|| {
                let i = *next;
                *next += 1;
                OpenTransaction {
                    instance: i,
                    partitions: BTreeSet::new(),
                    started_at: now,
                    writer: None,
                }
            });
            open.partitions.insert((topic.to_string(), p));
            if writer.is_some() {
                open.writer = writer;
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
        for (key, value) in records {
            let offset = part.next_offset;
            part.next_offset += 1;
            part.entries.push(LogEntry {
                offset,
                payload: Payload::Data {
                    key: key.clone(),
                    value: value.clone(),
                    transaction: Some(instance),
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
        let c = self.coordinators.get_mut(txn_id).expect("checked");
        match c.open.take() {
            Some(open) => {
                c.last = Some((open.instance, commit));
                self.finish(open, commit, Some((pid, epoch)));
                Ok(())
            }
            // A retry after the first attempt's reply was lost.
            None => match c.last {
                Some((_, outcome)) if outcome == commit => Ok(()),
                _ => Err(KafkaError::InvalidTxnState("no transaction in progress")),
            },
        }
    }

    /// Ends `open`; `producer` is the (id, epoch) whose `end_txn` ended it
    /// (none when the coordinator aborts it).
    fn finish(&mut self, open: OpenTransaction, commit: bool, producer: Option<(u64, u16)>) {
        self.outcomes.insert(
            open.instance,
            if commit {
                Outcome::Committed
            } else {
                Outcome::Aborted
            },
        );
        if let (true, Some(w), Some((producer_id, producer_epoch))) =
            (commit, &open.writer, producer)
        {
            self.commits.push(Commit {
                writer: w.clone(),
                producer_id,
                producer_epoch,
            });
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

    pub(super) fn abort_open(&mut self, txn_id: &str) {
        if let Some(open) = self
            .coordinators
            .get_mut(txn_id)
            .and_then(|c| c.open.take())
        {
            self.finish(open, false, None);
        }
    }
}
