//! A node's journal driver: Kafka as the journal. Opening fences older
//! writers (init producer id), reads to the committed end and hands the
//! records to the node; each write group is one Kafka transaction.
//!
//! What to write next and how every ticket is answered (a failed or fenced
//! transaction fails every append queued behind it until the next open) is
//! `halyard_core::journal::group_commit`, the same core the local and Kafka
//! drivers of `halyard-io` and the madsim harness use: this driver only
//! turns its steps into Kafka model requests and their answers back into
//! `opened`, `written`, `write_failed` and `write_fenced`. It answers with
//! `Effect`s.

use std::sync::Arc;

use halyard_core::journal::group_commit::{GroupCommit, GroupLimits, JournalStep, WriteGroup};
use halyard_core::journal::{decode_entry, Entry, Record};
use halyard_core::node::{Input, JournalEvent, JournalRequest};

use super::decoded::DecodedRecords;
use super::effects::Effect;
use super::journal_reads::{PageReader, ReadStep};
use super::kafka_requests::{Bridged, KafkaRequest, Records, RequestKind};
use crate::bridge_wire;
use crate::config::{DriverBug, PlantedBug};
use crate::kafka::{FetchResult, KafkaError, Writer};

const TRANSACTIONAL_ID: &str = "halyard-cluster";
/// One group commit is one Kafka transaction of at most this many journal
/// batches; the simulated messages are small, so the byte bound never binds.
const GROUP_LIMITS: GroupLimits = GroupLimits {
    group_appends_max: 64,
    group_bytes_max: 64 * 1024 * 1024,
};
const ATTEMPTS_MAX: u32 = 3;

/// Where an `Open` step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opening {
    InitProducerId,
    EndOffset,
    Loading { offset: u64, end: u64 },
}

/// The transaction of the `Write` step in flight: produced, then committed.
struct Transaction {
    records: Records,
    /// Offset of its first record once produced (for the page reader).
    base: Option<u64>,
    /// The Kafka bridge's records, written in the same transaction.
    bridged: Bridged,
    sequence: u64,
    committing: bool,
    attempts: u32,
    /// Planted bug `AckBeforeCommit`: its tickets were answered `Durable`
    /// once produced, so the group commit no longer waits for it.
    acked_early: bool,
    /// The producer was fenced; the newest activation record is being read
    /// to tell the node who fenced it.
    finding_fencer: bool,
}

/// How a transaction answered early (planted bug) ended, when not committed.
#[derive(Clone, Debug)]
enum LateFailure {
    Failed(String),
    Fenced(Option<u32>),
}

pub(super) struct JournalDriver {
    node_name: String,
    planted_bug: Option<DriverBug>,
    commit: GroupCommit,
    /// The `Open` step in flight.
    opening: Option<Opening>,
    /// The `Write` step in flight (or, with the planted bug, a transaction
    /// answered early and still committing).
    transaction: Option<Transaction>,
    /// With the planted bug: a transaction answered early then failed. The
    /// group commit had already heard `written`, so the next group is
    /// failed with this, which makes the node step down.
    late_failure: Option<LateFailure>,
    producer_id: u64,
    producer_epoch: u16,
    sequence: u64,
    transactional_id: String,
    activations: u64,
    /// Timed-out requests since opening last made progress.
    pub(super) attempts: u32,
    /// Reads of paged messages (see `journal_reads`).
    reads: PageReader,
    /// Messages read back since the run started (for the report).
    pub(super) paged_in: u64,
    /// The next open follows a preemption (only the planted bug
    /// `PreemptWithoutFencing` cares).
    preempting: bool,
}

impl JournalDriver {
    pub(super) fn new(node_name: String, planted_bug: Option<PlantedBug>) -> JournalDriver {
        let planted_bug = match planted_bug {
            Some(PlantedBug::Driver(b)) => Some(b),
            _ => None,
        };
        JournalDriver {
            node_name,
            planted_bug,
            commit: GroupCommit::new(GROUP_LIMITS),
            opening: None,
            transaction: None,
            late_failure: None,
            producer_id: 0,
            producer_epoch: 0,
            sequence: 0,
            transactional_id: TRANSACTIONAL_ID.to_string(),
            activations: 0,
            attempts: 0,
            reads: PageReader::default(),
            paged_in: 0,
            preempting: false,
        }
    }

    /// Forgets the node's requests (it crashed or restarted): its tickets
    /// start again from the first.
    pub(super) fn reset(&mut self) {
        self.commit = GroupCommit::new(GROUP_LIMITS);
        self.opening = None;
        self.transaction = None;
        self.late_failure = None;
        self.reads.reset();
        self.preempting = false;
    }

    /// The node is going live without the lock: its next open follows a
    /// preemption.
    pub(super) fn preempting(&mut self) {
        self.preempting = true;
    }

    /// A request from the node. `node_epoch` is the node's activation
    /// epoch, recorded as the writer of what it writes.
    pub(super) fn request(
        &mut self,
        request: JournalRequest,
        node_epoch: u32,
        out: &mut Vec<Effect>,
    ) {
        self.commit.push(request);
        self.advance(node_epoch, out);
    }

    /// Carries out the group commit's next steps until one waits for Kafka,
    /// and passes its answers on to the node in order.
    fn advance(&mut self, node_epoch: u32, out: &mut Vec<Effect>) {
        while self.opening.is_none() && self.transaction.is_none() && !self.reads.busy() {
            let step = self.commit.poll_step();
            // Earlier answers first: the `Loaded` inputs of an open follow them.
            self.answers(out);
            match step {
                None => return,
                Some(JournalStep::Open) => self.open(out),
                Some(JournalStep::Close) => self.late_failure = None,
                // Mirroring runs on the local journal; the simulated
                // broker's journal is Kafka's, and nobody asks it.
                Some(JournalStep::Snapshot { .. }) => {}
                Some(JournalStep::Write(group)) => self.write(group, node_epoch, out),
                Some(JournalStep::Read(ids)) => {
                    let step = self.reads.start(ids);
                    self.read_step(step, out);
                }
            }
        }
        self.answers(out);
    }

    /// Carries out what the page reader needs next.
    fn read_step(&mut self, step: ReadStep, out: &mut Vec<Effect>) {
        match step {
            ReadStep::Fetch(offset) => out.push(Effect::Request(
                RequestKind::ReadFetch,
                KafkaRequest::Fetch { offset },
            )),
            ReadStep::Done { asked, found } => {
                self.paged_in += found.len() as u64;
                self.commit.read_done(asked, found);
            }
        }
    }

    /// A fetch of the read in flight came back.
    pub(super) fn on_read_fetched(
        &mut self,
        fetched: &FetchResult,
        decoded: &mut DecodedRecords,
        node_epoch: u32,
        out: &mut Vec<Effect>,
    ) {
        if let Some(step) = self.reads.on_fetched(fetched, decoded) {
            self.read_step(step, out);
            self.advance(node_epoch, out);
        }
    }

    /// As the real drivers do: a write's answers reach the node as one input.
    fn answers(&mut self, out: &mut Vec<Effect>) {
        if let Some(input) = self.commit.poll_answers() {
            out.push(Effect::Input(input));
        }
    }

    fn open(&mut self, out: &mut Vec<Effect>) {
        self.reads.reset();
        self.opening = Some(Opening::InitProducerId);
        self.late_failure = None;
        self.attempts = 0;
        self.activations += 1;
        let preempting = std::mem::take(&mut self.preempting);
        match self.planted_bug {
            Some(DriverBug::SkipFencing) => {
                self.transactional_id =
                    format!("{TRANSACTIONAL_ID}-{}-{}", self.node_name, self.activations);
            }
            Some(DriverBug::PreemptWithoutFencing) => {
                // Planted bug: a preemption's open fences nobody (and
                // nobody's fences it); other opens use the shared id.
                self.transactional_id = if preempting {
                    format!("{TRANSACTIONAL_ID}-{}-{}", self.node_name, self.activations)
                } else {
                    TRANSACTIONAL_ID.to_string()
                };
            }
            _ => {}
        }
        self.request_producer_id(out);
    }

    fn open_failed(&mut self, reason: String, node_epoch: u32, out: &mut Vec<Effect>) {
        self.opening = None;
        self.commit.open_failed(reason);
        self.advance(node_epoch, out);
    }

    /// Starts the transaction of one write group.
    fn write(&mut self, group: WriteGroup, node_epoch: u32, out: &mut Vec<Effect>) {
        if let Some(failure) = self.late_failure.take() {
            // Planted bug: the writer failed after answering early; this
            // group cannot be written by it either.
            match failure {
                LateFailure::Failed(reason) => self.commit.write_failed(reason),
                LateFailure::Fenced(by_epoch) => self.commit.write_fenced(by_epoch),
            }
            return;
        }
        let mut records = Vec::with_capacity(group.batches.iter().map(Vec::len).sum());
        for batch in group.batches {
            records.extend(batch.into_iter().map(|e| (e.key, e.value)));
        }
        let mut bridged: Vec<_> = group.publish.iter().map(bridge_wire::to_model).collect();
        if self.planted_bug == Some(DriverBug::BridgeOutsideTransaction) && !bridged.is_empty() {
            // Planted bug: the bridged records go out on their own, before
            // the transaction, and stay even if it never commits.
            out.push(Effect::Notify(KafkaRequest::ProducePlain {
                bridged: Arc::new(std::mem::take(&mut bridged)),
            }));
        }
        let sequence = self.sequence;
        self.sequence += 1;
        self.transaction = Some(Transaction {
            records: Arc::new(records),
            base: None,
            bridged: Arc::new(bridged),
            sequence,
            committing: false,
            attempts: 0,
            acked_early: false,
            finding_fencer: false,
        });
        self.send_transaction_step(node_epoch, out);
    }

    pub(super) fn on_producer_id(
        &mut self,
        producer_id: u64,
        producer_epoch: u16,
        out: &mut Vec<Effect>,
    ) {
        if self.opening != Some(Opening::InitProducerId) {
            return;
        }
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.sequence = 0;
        self.opening = Some(Opening::EndOffset);
        self.attempts = 0;
        out.push(Effect::Request(
            RequestKind::EndOffset,
            KafkaRequest::EndOffset,
        ));
    }

    pub(super) fn on_end_offset(&mut self, end: u64, node_epoch: u32, out: &mut Vec<Effect>) {
        if self.opening != Some(Opening::EndOffset) {
            return;
        }
        self.opening = Some(Opening::Loading { offset: 0, end });
        self.attempts = 0;
        self.fetch_next(node_epoch, out);
    }

    pub(super) fn on_fetched(
        &mut self,
        fetched: &FetchResult,
        decoded: &mut DecodedRecords,
        node_epoch: u32,
        out: &mut Vec<Effect>,
    ) {
        let Some(Opening::Loading { end, .. }) = self.opening else {
            return;
        };
        let mut entries = Vec::with_capacity(fetched.records.len());
        for r in &fetched.records {
            match decoded.get(r.offset, &r.key, r.value.as_deref()) {
                Ok(e) => {
                    self.reads.note(r.offset, &e);
                    entries.push(e);
                }
                Err(e) => {
                    let reason = format!("offset {}: {e}", r.offset);
                    self.open_failed(reason, node_epoch, out);
                    return;
                }
            }
        }
        if !entries.is_empty() {
            out.push(Effect::Input(Input::Journal(JournalEvent::Loaded {
                entries,
            })));
        }
        self.opening = Some(Opening::Loading {
            offset: fetched.next_offset,
            end,
        });
        self.attempts = 0;
        self.fetch_next(node_epoch, out);
    }

    pub(super) fn on_produced(
        &mut self,
        result: Result<u64, KafkaError>,
        node_epoch: u32,
        out: &mut Vec<Effect>,
    ) {
        let Some(t) = self.transaction.as_mut() else {
            return;
        };
        if t.committing || t.finding_fencer {
            return;
        }
        match result {
            Ok(base) => {
                t.base = Some(base);
                t.committing = true;
                t.attempts = 0;
                if self.planted_bug == Some(DriverBug::AckBeforeCommit) {
                    // Planted bug: durable once produced, before the commit.
                    t.acked_early = true;
                    self.commit.written();
                    self.answers(out);
                }
                out.push(Effect::Request(
                    RequestKind::EndTransaction,
                    self.end_transaction(),
                ));
            }
            Err(KafkaError::ProducerFenced { .. }) => self.find_fencer(out),
            Err(e) => self.failed(e.to_string(), node_epoch, out),
        }
    }

    pub(super) fn on_transaction_ended(
        &mut self,
        result: Result<(), KafkaError>,
        node_epoch: u32,
        out: &mut Vec<Effect>,
    ) {
        let Some(t) = self.transaction.as_ref() else {
            return;
        };
        if !t.committing || t.finding_fencer {
            return;
        }
        match result {
            Ok(()) => {
                let t = self.transaction.take().expect("a transaction");
                if let Some(base) = t.base {
                    for (i, (key, value)) in t.records.iter().enumerate() {
                        self.reads.note_raw(base + i as u64, key, value.is_none());
                    }
                }
                if !t.acked_early {
                    self.commit.written();
                }
                self.advance(node_epoch, out);
            }
            Err(KafkaError::ProducerFenced { .. }) => self.find_fencer(out),
            Err(e) => self.failed(e.to_string(), node_epoch, out),
        }
    }

    /// The newest activation record names the live that fenced us.
    pub(super) fn on_latest_activation(
        &mut self,
        value: Option<&[u8]>,
        node_epoch: u32,
        out: &mut Vec<Effect>,
    ) {
        let by_epoch = value.and_then(|v| match decode_entry(b"activation", Some(v)) {
            Ok(Entry::Put(Record::Activation { epoch, .. })) => Some(epoch),
            _ => None,
        });
        self.fenced(by_epoch, node_epoch, out);
    }

    /// A journal request of `kind` got no answer in time.
    pub(super) fn on_timeout(&mut self, kind: RequestKind, node_epoch: u32, out: &mut Vec<Effect>) {
        match kind {
            RequestKind::InitProducerId | RequestKind::EndOffset | RequestKind::Fetch => {
                let Some(opening) = self.opening else {
                    return;
                };
                if self.attempts > ATTEMPTS_MAX {
                    let reason = "Kafka did not answer while opening the journal".to_string();
                    self.open_failed(reason, node_epoch, out);
                    return;
                }
                match opening {
                    Opening::InitProducerId => self.request_producer_id(out),
                    Opening::EndOffset => out.push(Effect::Request(
                        RequestKind::EndOffset,
                        KafkaRequest::EndOffset,
                    )),
                    Opening::Loading { .. } => self.fetch_next(node_epoch, out),
                }
            }
            RequestKind::Produce | RequestKind::EndTransaction => {
                let Some(t) = self.transaction.as_mut() else {
                    return;
                };
                t.attempts += 1;
                if t.attempts > ATTEMPTS_MAX {
                    // Its fate is unknown: the node must step down and reload.
                    self.failed(
                        "Kafka did not confirm the transaction".into(),
                        node_epoch,
                        out,
                    );
                } else {
                    self.send_transaction_step(node_epoch, out);
                }
            }
            RequestKind::LatestActivation => self.fenced(None, node_epoch, out),
            RequestKind::ReadFetch => match self.reads.on_timeout(ATTEMPTS_MAX) {
                Some(Ok(offset)) => out.push(Effect::Request(
                    RequestKind::ReadFetch,
                    KafkaRequest::Fetch { offset },
                )),
                Some(Err(asked)) => {
                    self.commit.read_failed(
                        asked,
                        "Kafka did not answer a read of paged messages".into(),
                    );
                    self.advance(node_epoch, out);
                }
                None => {}
            },
            RequestKind::JoinGroup | RequestKind::Heartbeat | RequestKind::BridgeFetch => {}
        }
    }

    fn request_producer_id(&self, out: &mut Vec<Effect>) {
        out.push(Effect::Request(
            RequestKind::InitProducerId,
            KafkaRequest::InitProducerId {
                transactional_id: self.transactional_id.clone(),
            },
        ));
    }

    fn fetch_next(&mut self, node_epoch: u32, out: &mut Vec<Effect>) {
        let Some(Opening::Loading { offset, end }) = self.opening else {
            return;
        };
        if offset >= end {
            self.opening = None;
            self.commit.opened();
            self.advance(node_epoch, out);
        } else {
            out.push(Effect::Request(
                RequestKind::Fetch,
                KafkaRequest::Fetch { offset },
            ));
        }
    }

    /// Sends (again) what the transaction in flight needs next.
    fn send_transaction_step(&self, node_epoch: u32, out: &mut Vec<Effect>) {
        let Some(t) = self.transaction.as_ref() else {
            return;
        };
        out.push(if t.committing {
            Effect::Request(RequestKind::EndTransaction, self.end_transaction())
        } else {
            Effect::Request(
                RequestKind::Produce,
                KafkaRequest::Produce {
                    transactional_id: self.transactional_id.clone(),
                    producer_id: self.producer_id,
                    producer_epoch: self.producer_epoch,
                    sequence: t.sequence,
                    records: t.records.clone(),
                    bridged: t.bridged.clone(),
                    writer: Writer {
                        node: self.node_name.clone(),
                        epoch: node_epoch,
                    },
                },
            )
        });
    }

    fn end_transaction(&self) -> KafkaRequest {
        KafkaRequest::EndTransaction {
            transactional_id: self.transactional_id.clone(),
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            commit: true,
        }
    }

    /// Asks which live fenced us (for "fenced by epoch N"), then tells the node.
    fn find_fencer(&mut self, out: &mut Vec<Effect>) {
        if let Some(t) = self.transaction.as_mut() {
            t.finding_fencer = true;
        }
        out.push(Effect::Request(
            RequestKind::LatestActivation,
            KafkaRequest::LatestActivation,
        ));
    }

    fn fenced(&mut self, by_epoch: Option<u32>, node_epoch: u32, out: &mut Vec<Effect>) {
        let Some(t) = self.transaction.take() else {
            return;
        };
        if t.acked_early {
            self.late_failure = Some(LateFailure::Fenced(by_epoch));
        } else {
            self.commit.write_fenced(by_epoch);
        }
        self.advance(node_epoch, out);
    }

    fn failed(&mut self, reason: String, node_epoch: u32, out: &mut Vec<Effect>) {
        let Some(t) = self.transaction.take() else {
            return;
        };
        if t.acked_early {
            self.late_failure = Some(LateFailure::Failed(reason));
        } else {
            self.commit.write_failed(reason);
        }
        self.advance(node_epoch, out);
    }
}
