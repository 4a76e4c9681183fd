//! `read_committed` reads: fetches that stop at the last stable offset and
//! skip aborted data, and the latest committed value of a key.

use bytes::Bytes;
use halyard_core::Millis;

use super::error::KafkaError;
use super::log::{Outcome, Payload};
use super::model::KafkaModel;

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
}

impl KafkaModel {
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
        let mut next = start;
        let from = part.entries.partition_point(|e| e.offset < start);
        let mut records = Vec::with_capacity(max.min(part.entries.len() - from));
        for e in &part.entries[from..] {
            if e.offset >= lso || records.len() >= max {
                break;
            }
            next = e.offset + 1;
            if let Payload::Data {
                key,
                value,
                transaction,
                ..
            } = &e.payload
            {
                let visible = match transaction {
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

    /// The latest committed value of `key` (what a reader of the tail finds).
    pub fn latest_committed(&self, topic: &str, p: u32, key: &[u8]) -> Option<Bytes> {
        let part = self.topics.get(topic).and_then(|ps| ps.get(p as usize))?;
        part.entries.iter().rev().find_map(|e| match &e.payload {
            Payload::Data {
                key: k,
                value,
                transaction,
                ..
            } if &k[..] == key
                && transaction
                    .is_none_or(|t| self.outcomes.get(&t) == Some(&Outcome::Committed)) =>
            {
                value.clone()
            }
            _ => None,
        })
    }
}
