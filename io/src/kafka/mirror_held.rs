//! The held Kafka mirror lock: the epoch and the lock state in the compacted
//! one-partition state topic, written by a transactional producer whose
//! `transactional.id` is fixed per lock id (`halyard-mirror-lock-<lock-id>`).
//!
//! - Acquiring (the member holds partition 0 of the lock group):
//!   `init_transactions` fences every earlier holder's producer (from then
//!   on each of its writes fails); the state topic is read to its end
//!   (read_committed: no earlier holder can add to it any more); a record
//!   with the newest epoch plus one, and the state unchanged, is written in
//!   a transaction. That committed record is the acquisition: its epoch is
//!   this holder's, larger than every earlier one.
//! - The version a write names is the offset of the last record: a write
//!   reads the topic to its end, checks that the last record is still this
//!   holder's epoch (else fenced) at the offset the writer read (else
//!   stale), and writes in a transaction, which fails if a newer holder
//!   initialised the producer meanwhile (fenced).
//!
//! Every Kafka call here blocks: the [`HeldLock`] face runs each on a
//! thread of its own (`on_thread`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use halyard_core::coordinator::LockState;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::mirror_error::KafkaMirrorLockError;
use super::mirror_member::{KafkaMirrorLockConfig, Member};
use super::mirror_record::{decode, encode, LockRecord, RECORD_KEY};
use super::produce::{is_fencing, send_journal_record, JournalContext, JournalProducer};
use super::read::read_position;
use crate::coordinator::{CoordinatorError, HeldLock, ReadState};

type Error = KafkaMirrorLockError;

/// The version of the lock state: the offset of the state topic's last
/// record (a write names the one it read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateOffset(pub i64);

/// Runs a blocking call on a thread of its own and awaits its answer.
pub(crate) async fn on_thread<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("halyard-mirror-{what}"))
        .spawn(move || {
            // The caller may have stopped waiting (its call is bounded).
            let _ = tx.send(f());
        })
        .map_err(|_| Error::NoAnswer(what))?;
    rx.await.map_err(|_| Error::NoAnswer(what))?
}

/// Quiet about end-of-partition, which the reader asks for on purpose.
struct StateReaderContext;

impl ClientContext for StateReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF);
        if !eof {
            warn!(%error, reason, "Kafka mirror lock state reader");
        }
    }
}

impl ConsumerContext for StateReaderContext {}

/// The state topic as one holder reads and writes it.
struct StateLog {
    /// Its delivery reports carry the offset of each record written.
    producer: JournalProducer,
    reader: BaseConsumer<StateReaderContext>,
    topic: String,
    timeout: Duration,
    timeout_ms: u64,
    assigned: bool,
    /// The last record read: its offset and what it holds.
    last: Option<(i64, LockRecord)>,
}

fn fencing_code(code: RDKafkaErrorCode) -> bool {
    is_fencing(&KafkaError::Global(code))
}

impl StateLog {
    fn open(config: &KafkaMirrorLockConfig) -> Result<StateLog, Error> {
        let client = |what, source| Error::Client {
            what,
            bootstrap: config.kafka.bootstrap.clone(),
            source,
        };
        let producer: JournalProducer = config
            .kafka
            .client()
            .set("client.id", format!("halyard-mirror-{}", config.node))
            .set("transactional.id", config.transactional_id())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "transaction.timeout.ms",
                config.kafka.transaction_timeout_ms.to_string(),
            )
            .create_with_context(JournalContext::default())
            .map_err(|e| client("state producer", e))?;
        let reader: BaseConsumer<StateReaderContext> = config
            .kafka
            .client()
            .set("client.id", format!("halyard-mirror-{}", config.node))
            .set("group.id", format!("{}-reader", config.state_topic()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "10")
            .set("auto.offset.reset", "earliest")
            .create_with_context(StateReaderContext)
            .map_err(|e| client("state reader", e))?;
        Ok(StateLog {
            producer,
            reader,
            topic: config.state_topic(),
            timeout: config.timeout(),
            timeout_ms: config.kafka.operation_timeout_ms,
            assigned: false,
            last: None,
        })
    }

    fn read_error(&self, source: KafkaError) -> Error {
        Error::Read {
            topic: self.topic.clone(),
            source,
        }
    }

    /// Reads the committed records up to the topic's end as it is now;
    /// keeps the last.
    fn read_to_end(&mut self) -> Result<(), Error> {
        let (low, high) = self
            .reader
            .fetch_watermarks(&self.topic, 0, self.timeout)
            .map_err(|e| self.read_error(e))?;
        if !self.assigned && high <= low {
            return Ok(());
        }
        self.read_until(high)
    }

    /// Reads the committed records before offset `end` (a commit's markers
    /// reach the partition a moment after `commit_transaction` returned:
    /// a writer reads up to past its own record).
    fn read_until(&mut self, end: i64) -> Result<(), Error> {
        if !self.assigned {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&self.topic, 0, Offset::Beginning)
                .and_then(|()| self.reader.assign(&tpl))
                .map_err(|e| self.read_error(e))?;
            self.assigned = true;
        }
        let deadline = Instant::now() + self.timeout;
        // A client error (a broker connection down, reported late) is
        // retried until the deadline, then reported.
        let mut trouble = None;
        loop {
            let at = read_position(&self.reader, &self.topic);
            if at.is_some_and(|o| o >= end) {
                return Ok(());
            }
            if Instant::now() > deadline {
                if let Some(e) = trouble {
                    return Err(self.read_error(e));
                }
                return Err(Error::ReadStuck {
                    topic: self.topic.clone(),
                    at,
                    end,
                    timeout_ms: self.timeout_ms,
                });
            }
            match self.reader.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let offset = m.offset();
                    let record = decode(m.payload().unwrap_or_default()).map_err(|reason| {
                        Error::Corrupt {
                            topic: self.topic.clone(),
                            offset,
                            reason,
                        }
                    })?;
                    // Assert at the reading end: epochs never go back.
                    if let Some((_, before)) = &self.last {
                        if record.epoch < before.epoch {
                            return Err(Error::Corrupt {
                                topic: self.topic.clone(),
                                offset,
                                reason: format!(
                                    "epoch {} after epoch {}",
                                    record.epoch, before.epoch
                                ),
                            });
                        }
                    }
                    self.last = Some((offset, record));
                }
                // End of what is committed; markers may still lie before `end`.
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => {
                    debug!(topic = %self.topic, error = %e, "reading the lock state");
                    trouble = Some(e);
                }
            }
        }
    }

    /// Writes `record` in one transaction: the record's offset. A fencing
    /// error is [`Error::Fenced`]; another error aborts the transaction.
    fn write(&mut self, record: &LockRecord, epoch: u64) -> Result<i64, Error> {
        let value = encode(record);
        self.producer.context().take();
        let sent = self
            .producer
            .begin_transaction()
            .and_then(|()| {
                send_journal_record(&self.producer, &self.topic, RECORD_KEY, Some(&value), 0)
            })
            .and_then(|()| self.producer.commit_transaction(self.timeout));
        let e = match sent {
            Ok(()) => {
                // The commit flushed the record: its report is in.
                self.producer.poll(Duration::ZERO);
                return match self.producer.context().take().as_slice() {
                    [(0, offset)] => Ok(*offset),
                    other => Err(Error::Lost {
                        why: format!("the committed state record's offset is unknown ({other:?})"),
                    }),
                };
            }
            Err(e) => e,
        };
        let fatal = self.producer.client().fatal_error();
        if is_fencing(&e) || fatal.as_ref().is_some_and(|(c, _)| fencing_code(*c)) {
            return Err(Error::Fenced { epoch });
        }
        if let Some((code, why)) = fatal {
            return Err(Error::Lost {
                why: format!("the state producer failed for good: {code}: {why}"),
            });
        }
        if let Err(abort) = self.producer.abort_transaction(self.timeout) {
            warn!(topic = %self.topic, error = %abort, "aborting the lock state transaction failed");
        }
        Err(Error::Write {
            topic: self.topic.clone(),
            source: e,
        })
    }

    /// The last record, checked to be `epoch`'s.
    fn ours(&self, epoch: u64) -> Result<(i64, &LockRecord), Error> {
        match &self.last {
            None => Err(Error::Lost {
                why: format!(
                    "{} is empty: the record of epoch {epoch} is gone",
                    self.topic
                ),
            }),
            Some((_, r)) if r.epoch > epoch => Err(Error::Fenced { epoch }),
            Some((offset, r)) if r.epoch < epoch => Err(Error::Corrupt {
                topic: self.topic.clone(),
                offset: *offset,
                reason: format!("epoch {} is older than this holder's {epoch}", r.epoch),
            }),
            Some((offset, r)) => Ok((*offset, r)),
        }
    }

    /// Writes `record` and reads it back: its offset.
    fn write_and_confirm(&mut self, record: &LockRecord) -> Result<i64, Error> {
        let written = self.write(record, record.epoch)?;
        self.read_until(written + 1)?;
        let (offset, back) = self.ours(record.epoch)?;
        if back != record || offset != written {
            return Err(Error::Corrupt {
                topic: self.topic.clone(),
                offset,
                reason: format!("read back {back:?} after writing {record:?} at offset {written}"),
            });
        }
        Ok(offset)
    }
}

/// A held Kafka mirror lock.
pub struct KafkaHeld {
    epoch: u64,
    /// The member's generation of partition 0 this lock was taken under.
    generation: u64,
    member: Arc<Member>,
    log: Arc<Mutex<StateLog>>,
    node: String,
    /// Set once a write was fenced: every later call says so.
    fenced: Arc<Mutex<bool>>,
}

/// Acquires the lock for a member that holds partition 0 under
/// `generation` (blocking). `Ok(None)`: partition 0 moved, or another
/// holder initialised the producer meanwhile.
pub(crate) fn acquire(
    config: &KafkaMirrorLockConfig,
    member: Arc<Member>,
    generation: u64,
) -> Result<Option<KafkaHeld>, Error> {
    let started = Instant::now();
    let mut log = StateLog::open(config)?;
    match log.producer.init_transactions(config.timeout()) {
        Ok(()) => {}
        Err(e) if is_fencing(&e) => {
            debug!(node = %config.node, error = %e, "another holder initialised the lock producer meanwhile");
            return Ok(None);
        }
        Err(source) => {
            return Err(Error::InitTransactions {
                transactional_id: config.transactional_id(),
                source,
            })
        }
    }
    // Every earlier holder is fenced now; partition 0 may have moved while
    // this one waited.
    if let Err(why) = member.still_holds(generation) {
        debug!(node = %config.node, "not acquiring the Kafka mirror lock: {why}");
        return Ok(None);
    }
    log.read_to_end()?;
    let (newest, state) = log
        .last
        .as_ref()
        .map_or((0, None), |(_, r)| (r.epoch, r.state.clone()));
    let epoch = newest + 1;
    let offset = log.write_and_confirm(&LockRecord { epoch, state })?;
    info!(
        node = %config.node,
        epoch,
        offset,
        group = member.group(),
        ms = started.elapsed().as_millis() as u64,
        "acquired the Kafka mirror lock with epoch {epoch}"
    );
    Ok(Some(KafkaHeld {
        epoch,
        generation,
        member,
        log: Arc::new(Mutex::new(log)),
        node: config.node.clone(),
        fenced: Arc::new(Mutex::new(false)),
    }))
}

/// The last record of the state topic, read without the lock (blocking):
/// `None` before the first acquisition. The producer `StateLog` makes is
/// never initialised, so it fences nobody.
pub(crate) fn peek(config: &KafkaMirrorLockConfig) -> Result<Option<LockRecord>, Error> {
    let mut log = StateLog::open(config)?;
    log.read_to_end()?;
    Ok(log.last.map(|(_, r)| r))
}

fn poisoned() -> Error {
    Error::Lost {
        why: "a call on the lock panicked".to_string(),
    }
}

impl KafkaHeld {
    /// Runs `f` on the state log on a thread of its own, noting a fencing.
    async fn with_log<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut StateLog) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        if self.is_fenced() {
            return Err(Error::Fenced { epoch: self.epoch });
        }
        let log = self.log.clone();
        let answer = on_thread(what, move || f(&mut *log.lock().map_err(|_| poisoned())?)).await;
        if let Err(Error::Fenced { .. }) = &answer {
            if let Ok(mut f) = self.fenced.lock() {
                *f = true;
            }
            warn!(node = %self.node, epoch = self.epoch, "the Kafka mirror lock of epoch {} is fenced: a newer holder took it", self.epoch);
        }
        answer
    }

    fn is_fenced(&self) -> bool {
        self.fenced.lock().map_or(true, |f| *f)
    }
}

impl HeldLock for KafkaHeld {
    type Version = StateOffset;

    fn epoch(&self) -> u64 {
        self.epoch
    }

    async fn read_state(&self) -> Result<ReadState<StateOffset>, CoordinatorError> {
        let epoch = self.epoch;
        let read = self
            .with_log("read", move |log| {
                log.read_to_end()?;
                let (offset, r) = log.ours(epoch)?;
                Ok(ReadState {
                    state: r.state.clone(),
                    version: StateOffset(offset),
                })
            })
            .await?;
        Ok(read)
    }

    async fn write_state(
        &self,
        in_sync: &BTreeSet<String>,
        expected: StateOffset,
    ) -> Result<StateOffset, CoordinatorError> {
        let epoch = self.epoch;
        let record = LockRecord {
            epoch,
            state: Some(LockState {
                epoch,
                in_sync: in_sync.clone(),
            }),
        };
        let offset = self
            .with_log("write", move |log| {
                log.read_to_end()?;
                let (found, _) = log.ours(epoch)?;
                if found != expected.0 {
                    return Err(Error::StaleVersion {
                        expected: expected.0,
                        found,
                    });
                }
                log.write_and_confirm(&record)
            })
            .await?;
        Ok(StateOffset(offset))
    }

    fn check(&self) -> Result<(), CoordinatorError> {
        if self.is_fenced() {
            return Err(Error::Fenced { epoch: self.epoch }.into());
        }
        self.member
            .still_holds(self.generation)
            .map_err(|why| Error::Lost { why }.into())
    }

    async fn release(self) -> Result<(), CoordinatorError> {
        let KafkaHeld {
            epoch,
            member,
            log,
            node,
            ..
        } = self;
        on_thread("release", move || {
            member.leave();
            drop(log);
            Ok(())
        })
        .await?;
        info!(%node, epoch, "released the Kafka mirror lock of epoch {epoch}: left the group");
        Ok(())
    }
}
