//! A node's journal driver: Kafka as the journal. Opening fences older
//! writers (init producer id), reads to the committed end and hands the
//! records to the node; appends waiting together go into one transaction
//! (group commit). It answers the node's requests and Kafka's responses with
//! `Effect`s.

use std::collections::VecDeque;
use std::sync::Arc;

use halyard_core::ids::Ticket;
use halyard_core::journal::{decode_entry, encode_entry, CodecError, Entry, Record};
use halyard_core::node::{Input, JournalEvent};

use super::effects::Effect;
use super::kafka_requests::{KafkaRequest, Records, RequestKind};
use crate::config::{DriverBug, PlantedBug};
use crate::kafka::{FetchResult, KafkaError, Writer};

const TRANSACTIONAL_ID: &str = "halyard-cluster";
/// Journal batches per Kafka transaction (group commit).
const TRANSACTION_BATCHES_MAX: usize = 64;
const ATTEMPTS_MAX: u32 = 3;

#[derive(Clone, Debug, PartialEq, Eq)]
enum JournalState {
    Closed,
    InitProducerId,
    EndOffset,
    Loading { offset: u64, end: u64 },
    Open,
}

/// The transaction in flight: produced, then committed.
struct Transaction {
    tickets: Vec<Ticket>,
    records: Records,
    sequence: u64,
    committing: bool,
    attempts: u32,
    acked_early: bool,
}

pub(super) struct JournalDriver {
    node_name: String,
    planted_bug: Option<DriverBug>,
    state: JournalState,
    waiting: VecDeque<(Ticket, Vec<Entry>)>,
    transaction: Option<Transaction>,
    producer_id: u64,
    producer_epoch: u16,
    sequence: u64,
    transactional_id: String,
    activations: u64,
    /// Timed-out requests since opening last made progress.
    pub(super) attempts: u32,
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
            state: JournalState::Closed,
            waiting: VecDeque::new(),
            transaction: None,
            producer_id: 0,
            producer_epoch: 0,
            sequence: 0,
            transactional_id: TRANSACTIONAL_ID.to_string(),
            activations: 0,
            attempts: 0,
        }
    }

    /// Forgets the node's requests (it crashed or restarted).
    pub(super) fn reset(&mut self) {
        self.state = JournalState::Closed;
        self.waiting.clear();
        self.transaction = None;
    }

    pub(super) fn open(&mut self, out: &mut Vec<Effect>) {
        self.state = JournalState::InitProducerId;
        self.attempts = 0;
        self.transaction = None;
        self.waiting.clear();
        self.activations += 1;
        if self.planted_bug == Some(DriverBug::SkipFencing) {
            self.transactional_id =
                format!("{TRANSACTIONAL_ID}-{}-{}", self.node_name, self.activations);
        }
        self.request_producer_id(out);
    }

    pub(super) fn close(&mut self) {
        self.state = JournalState::Closed;
        self.transaction = None;
        self.waiting.clear();
    }

    /// `node_epoch` is the node's activation epoch, recorded as the writer.
    pub(super) fn append(
        &mut self,
        ticket: Ticket,
        entries: Vec<Entry>,
        node_epoch: u32,
        out: &mut Vec<Effect>,
    ) {
        self.waiting.push_back((ticket, entries));
        self.start_transaction(node_epoch, out);
    }

    pub(super) fn on_producer_id(
        &mut self,
        producer_id: u64,
        producer_epoch: u16,
        out: &mut Vec<Effect>,
    ) {
        if self.state != JournalState::InitProducerId {
            return;
        }
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.sequence = 0;
        self.state = JournalState::EndOffset;
        self.attempts = 0;
        out.push(Effect::Request(
            RequestKind::EndOffset,
            KafkaRequest::EndOffset,
        ));
    }

    pub(super) fn on_end_offset(&mut self, end: u64, node_epoch: u32, out: &mut Vec<Effect>) {
        if self.state != JournalState::EndOffset {
            return;
        }
        self.state = JournalState::Loading { offset: 0, end };
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
        let JournalState::Loading { end, .. } = self.state else {
            return;
        };
        let mut entries = Vec::with_capacity(fetched.records.len());
        for r in &fetched.records {
            match decoded.get(r.offset, &r.key, r.value.as_deref()) {
                Ok(e) => entries.push(e),
                Err(e) => {
                    self.state = JournalState::Closed;
                    out.push(Effect::Input(Input::Journal(JournalEvent::OpenFailed {
                        reason: format!("offset {}: {e}", r.offset),
                    })));
                    return;
                }
            }
        }
        if !entries.is_empty() {
            out.push(Effect::Input(Input::Journal(JournalEvent::Loaded {
                entries,
            })));
        }
        self.state = JournalState::Loading {
            offset: fetched.next_offset,
            end,
        };
        self.attempts = 0;
        self.fetch_next(node_epoch, out);
    }

    pub(super) fn on_produced(&mut self, result: Result<u64, KafkaError>, out: &mut Vec<Effect>) {
        if self.state != JournalState::Open
            || self.transaction.as_ref().is_none_or(|t| t.committing)
        {
            return;
        }
        match result {
            Ok(_) => {
                let ack_early = self.planted_bug == Some(DriverBug::AckBeforeCommit);
                let t = self.transaction.as_mut().expect("a transaction");
                t.committing = true;
                t.attempts = 0;
                if ack_early {
                    t.acked_early = true;
                    for &ticket in &t.tickets {
                        out.push(Effect::Input(Input::Journal(JournalEvent::Durable {
                            ticket,
                        })));
                    }
                }
                out.push(Effect::Request(
                    RequestKind::EndTransaction,
                    self.end_transaction(),
                ));
            }
            Err(KafkaError::ProducerFenced { .. }) => Self::find_fencer(out),
            Err(e) => self.failed(e.to_string(), out),
        }
    }

    pub(super) fn on_transaction_ended(
        &mut self,
        result: Result<(), KafkaError>,
        node_epoch: u32,
        out: &mut Vec<Effect>,
    ) {
        if self.state != JournalState::Open || self.transaction.is_none() {
            return;
        }
        match result {
            Ok(()) => {
                let t = self.transaction.take().expect("a transaction");
                if !t.acked_early {
                    for ticket in t.tickets {
                        out.push(Effect::Input(Input::Journal(JournalEvent::Durable {
                            ticket,
                        })));
                    }
                }
                self.start_transaction(node_epoch, out);
            }
            Err(KafkaError::ProducerFenced { .. }) => Self::find_fencer(out),
            Err(e) => self.failed(e.to_string(), out),
        }
    }

    /// The newest activation record names the live that fenced us.
    pub(super) fn on_latest_activation(&mut self, value: Option<&[u8]>, out: &mut Vec<Effect>) {
        let by_epoch = value.and_then(|v| match decode_entry(b"activation", Some(v)) {
            Ok(Entry::Put(Record::Activation { epoch, .. })) => Some(epoch),
            _ => None,
        });
        self.fenced(by_epoch, out);
    }

    /// A journal request of `kind` got no answer in time.
    pub(super) fn on_timeout(&mut self, kind: RequestKind, node_epoch: u32, out: &mut Vec<Effect>) {
        match kind {
            RequestKind::InitProducerId | RequestKind::EndOffset | RequestKind::Fetch => {
                if self.attempts > ATTEMPTS_MAX {
                    self.state = JournalState::Closed;
                    out.push(Effect::Input(Input::Journal(JournalEvent::OpenFailed {
                        reason: "Kafka did not answer while opening the journal".into(),
                    })));
                } else {
                    match self.state {
                        JournalState::InitProducerId => self.request_producer_id(out),
                        JournalState::EndOffset => out.push(Effect::Request(
                            RequestKind::EndOffset,
                            KafkaRequest::EndOffset,
                        )),
                        JournalState::Loading { .. } => self.fetch_next(node_epoch, out),
                        _ => {}
                    }
                }
            }
            RequestKind::Produce | RequestKind::EndTransaction => {
                let Some(t) = self.transaction.as_mut() else {
                    return;
                };
                t.attempts += 1;
                if t.attempts > ATTEMPTS_MAX {
                    // Its fate is unknown: the node must step down and reload.
                    self.failed("Kafka did not confirm the transaction".into(), out);
                } else {
                    self.send_transaction_step(node_epoch, out);
                }
            }
            RequestKind::LatestActivation => self.fenced(None, out),
            RequestKind::JoinGroup | RequestKind::Heartbeat => {}
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
        let JournalState::Loading { offset, end } = self.state else {
            return;
        };
        if offset >= end {
            self.state = JournalState::Open;
            out.push(Effect::Input(Input::Journal(JournalEvent::Ready)));
            self.start_transaction(node_epoch, out);
        } else {
            out.push(Effect::Request(
                RequestKind::Fetch,
                KafkaRequest::Fetch { offset },
            ));
        }
    }

    /// Starts a transaction with every append waiting (group commit).
    fn start_transaction(&mut self, node_epoch: u32, out: &mut Vec<Effect>) {
        if self.state != JournalState::Open || self.transaction.is_some() || self.waiting.is_empty()
        {
            return;
        }
        let mut tickets = Vec::new();
        let mut records = Vec::new();
        while tickets.len() < TRANSACTION_BATCHES_MAX {
            let Some((t, entries)) = self.waiting.pop_front() else {
                break;
            };
            tickets.push(t);
            records.extend(entries.iter().map(encode_entry));
        }
        let sequence = self.sequence;
        self.sequence += 1;
        self.transaction = Some(Transaction {
            tickets,
            records: Arc::new(records),
            sequence,
            committing: false,
            attempts: 0,
            acked_early: false,
        });
        self.send_transaction_step(node_epoch, out);
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
    fn find_fencer(out: &mut Vec<Effect>) {
        out.push(Effect::Request(
            RequestKind::LatestActivation,
            KafkaRequest::LatestActivation,
        ));
    }

    fn fenced(&mut self, by_epoch: Option<u32>, out: &mut Vec<Effect>) {
        if let Some(ticket) = self.abandon() {
            out.push(Effect::Input(Input::Journal(JournalEvent::Fenced {
                ticket,
                by_epoch,
            })));
        }
    }

    fn failed(&mut self, reason: String, out: &mut Vec<Effect>) {
        if let Some(ticket) = self.abandon() {
            out.push(Effect::Input(Input::Journal(JournalEvent::Failed {
                ticket,
                reason,
            })));
        }
    }

    /// Closes the journal and drops what waits; returns the oldest ticket
    /// not yet answered, the one the node hears the outcome for.
    fn abandon(&mut self) -> Option<Ticket> {
        // A transaction acknowledged early (planted bug) has no ticket left
        // to answer: the next unanswered one waits in the queue.
        let ticket = self
            .transaction
            .as_ref()
            .filter(|t| !t.acked_early)
            .and_then(|t| t.tickets.first().copied());
        let ticket = ticket.or_else(|| self.waiting.front().map(|(t, _)| *t));
        self.transaction = None;
        self.waiting.clear();
        self.state = JournalState::Closed;
        ticket
    }
}

/// Journal records already decoded, by offset. A Kafka offset holds the
/// same record for ever (compaction removes records, never changes them)
/// and decoding is a pure function of its bytes, so every node's reload
/// after the first takes a copy of the entry instead of decoding again.
#[derive(Default)]
pub(super) struct DecodedRecords {
    by_offset: Vec<Option<Entry>>,
}

impl DecodedRecords {
    fn get(&mut self, offset: u64, key: &[u8], value: Option<&[u8]>) -> Result<Entry, CodecError> {
        let i = usize::try_from(offset).expect("offsets fit in memory");
        if let Some(Some(e)) = self.by_offset.get(i) {
            return Ok(e.clone());
        }
        let e = decode_entry(key, value)?;
        if self.by_offset.len() <= i {
            self.by_offset.resize(i + 1, None);
        }
        self.by_offset[i] = Some(e.clone());
        Ok(e)
    }
}
