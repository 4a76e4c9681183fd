//! Reading the journal topic's records at given offsets: a dedicated
//! consumer (`read_committed`, no group membership, no commits) assigned to
//! partition 0 at the smallest wanted offset, reading forward. Used to read
//! paged messages back (`paged`), by the activation to fetch the records
//! the standby copy kept as offsets only, and to find the offsets of a
//! transaction whose delivery reports lacked them.
//!
//! Between fetches the consumer stays where it stopped: the next read of a
//! queue's backlog usually starts right there, and the records after it
//! are already on their way (librdkafka prefetches, bounded by
//! `PREFETCH_KBYTES`). A wanted offset further ahead than `GAP_RECORDS`
//! is sought to rather than read up to.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::config::KafkaConfig;
use super::error::{FetchError, ReadError};
use super::read::{read_position, ReaderContext};

/// Records read past rather than sought over.
const GAP_RECORDS: i64 = 4096;
/// What librdkafka may hold fetched ahead of us (`queued.max.messages.kbytes`).
const PREFETCH_KBYTES: &str = "8192";
/// One fetch response at most (`fetch.max.bytes`); a larger record still
/// comes, alone.
const FETCH_BYTES_MAX: &str = "4194304";
/// One partition's part of a fetch response (`max.partition.fetch.bytes`).
const PARTITION_FETCH_BYTES: &str = "2097152";
/// How long librdkafka waits before fetching again once the prefetch is
/// full (`fetch.queue.backoff.ms`, default 1000): a read that drains it
/// should not wait that long for the records after. Every journal reader
/// sets it (the standby reader, the full load, the pager).
pub(super) const FULL_QUEUE_BACKOFF_MS: &str = "5";
/// One poll's wait, so the deadline is looked at.
const POLL_STEP: Duration = Duration::from_millis(100);

/// A consumer for reading records at given offsets. See the module docs.
pub struct Fetcher {
    consumer: BaseConsumer<ReaderContext>,
    topic: String,
    /// Where the consumer reads next, if it is assigned.
    next: Option<i64>,
}

impl Fetcher {
    pub fn new(config: &KafkaConfig) -> Result<Fetcher, ReadError> {
        let consumer = config
            .client()
            .set("group.id", format!("halyard-{}-pager", config.cluster_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "10")
            // An offset out of the partition's range is an error to
            // report, not a reason to read from its start.
            .set("auto.offset.reset", "error")
            .set("fetch.max.bytes", FETCH_BYTES_MAX)
            .set("max.partition.fetch.bytes", PARTITION_FETCH_BYTES)
            .set("queued.max.messages.kbytes", PREFETCH_KBYTES)
            .set("fetch.queue.backoff.ms", FULL_QUEUE_BACKOFF_MS)
            .create_with_context(ReaderContext)
            .map_err(|source| ReadError::Consumer {
                bootstrap: config.bootstrap.clone(),
                source,
            })?;
        Ok(Fetcher {
            consumer,
            topic: config.journal_topic(),
            next: None,
        })
    }

    fn seek<E: std::error::Error>(&mut self, offset: i64) -> Result<(), FetchError<E>> {
        let assign = |source| FetchError::Assign {
            topic: self.topic.clone(),
            offset,
            source,
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, 0, Offset::Offset(offset))
            .map_err(assign)?;
        self.next = None;
        self.consumer.assign(&tpl).map_err(assign)?;
        self.next = Some(offset);
        Ok(())
    }

    /// Calls `visit(offset, key, value)` for the record at each offset of
    /// `wanted` (ascending) that the topic holds, committed, in offset
    /// order; an offset read past without a record (a transaction marker,
    /// an aborted record, one compacted away) is left out. Offsets below
    /// `visible_below` are of committed records: at the end of what is
    /// readable (the last stable offset), one not read yet is waited for
    /// (a transaction's markers are written just after its commit returns);
    /// the others are left out. Returns how many were visited. At most
    /// `timeout` in all; an error of `visit` stops the fetch.
    pub fn fetch<E: std::error::Error + 'static>(
        &mut self,
        wanted: &[i64],
        visible_below: i64,
        timeout: Duration,
        mut visit: impl FnMut(i64, &[u8], Option<&[u8]>) -> Result<(), E>,
    ) -> Result<usize, FetchError<E>> {
        debug_assert!(
            wanted.windows(2).all(|w| w[0] < w[1]),
            "wanted offsets unsorted"
        );
        let deadline = Instant::now() + timeout;
        let mut i = 0;
        let mut found = 0;
        while i < wanted.len() {
            let target = wanted[i];
            match self.next {
                Some(n) if n <= target && target - n <= GAP_RECORDS => {}
                _ => self.seek(target)?,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(FetchError::Timeout {
                    topic: self.topic.clone(),
                    wanted: wanted.len(),
                    first: wanted[0],
                    last: wanted[wanted.len() - 1],
                    found,
                    at: self.next.unwrap_or(target),
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
            match self.consumer.poll(left.min(POLL_STEP)) {
                Some(Ok(m)) => {
                    let o = m.offset();
                    self.next = Some(o + 1);
                    while i < wanted.len() && wanted[i] < o {
                        i += 1;
                    }
                    if i < wanted.len() && wanted[i] == o {
                        visit(o, m.key().unwrap_or_default(), m.payload())
                            .map_err(FetchError::Record)?;
                        found += 1;
                        i += 1;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    // At the end of what is readable now (maybe an old
                    // end, reached while prefetching after the last fetch:
                    // the consumer reads on either way). Offsets before it
                    // hold no record.
                    if let Some(at) = read_position(&self.consumer, &self.topic) {
                        self.next = Some(at);
                        while i < wanted.len() && wanted[i] < at {
                            i += 1;
                        }
                    }
                    if i >= wanted.len() || wanted[i] >= visible_below {
                        return Ok(found);
                    }
                }
                Some(Err(source)) => {
                    self.next = None;
                    return Err(FetchError::Poll {
                        topic: self.topic.clone(),
                        offset: target,
                        source,
                    });
                }
                None => {}
            }
        }
        Ok(found)
    }
}
