//! What a node's drivers ask of Kafka, what Kafka answers, and the Kafka
//! side that applies a request to the model.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use halyard_core::Millis;

use crate::kafka::{FetchResult, GroupStatus, KafkaError, KafkaModel, Writer};

pub(super) const JOURNAL_TOPIC: &str = "halyard-journal";
const LOCK_GROUP: &str = "halyard-lock";
const FETCH_RECORDS_MAX: usize = 500;

/// Encoded journal records (key, value or tombstone), shared between a
/// transaction and its retries.
pub(super) type Records = Arc<Vec<(Bytes, Option<Bytes>)>>;
/// The Kafka bridge's records of a transaction: (topic, key, value), the
/// value holding the record's headers too (see `bridge_wire`).
pub(super) type Bridged = Arc<Vec<(String, Bytes, Bytes)>>;

#[derive(Clone, Debug)]
pub(super) enum KafkaRequest {
    InitProducerId {
        transactional_id: String,
    },
    EndOffset,
    Fetch {
        offset: u64,
    },
    Produce {
        transactional_id: String,
        producer_id: u64,
        producer_epoch: u16,
        sequence: u64,
        records: Records,
        /// Written to their topics in the same transaction.
        bridged: Bridged,
        writer: Writer,
    },
    /// A non-transactional write of bridged records (planted bug
    /// `BridgeOutsideTransaction` only).
    ProducePlain {
        bridged: Bridged,
    },
    /// The Kafka bridge's reader: a `read_committed` fetch of a topic.
    FetchTopic {
        topic: String,
        offset: u64,
    },
    EndTransaction {
        transactional_id: String,
        producer_id: u64,
        producer_epoch: u16,
        commit: bool,
    },
    /// The newest committed activation record: who fenced us.
    LatestActivation,
    JoinGroup {
        member: String,
    },
    Heartbeat {
        member: String,
    },
    LeaveGroup {
        member: String,
    },
}

#[derive(Clone, Debug)]
pub(super) enum KafkaResponse {
    ProducerId {
        producer_id: u64,
        producer_epoch: u16,
    },
    EndOffset(u64),
    Fetched(FetchResult),
    /// The Kafka bridge reader's fetch of `topic`.
    TopicFetched {
        topic: String,
        result: FetchResult,
    },
    Produced(Result<u64, KafkaError>),
    TransactionEnded(Result<(), KafkaError>),
    LatestActivation(Option<Bytes>),
    Group(Result<GroupStatus, KafkaError>),
    Left,
}

/// What an answered-or-timed-out request was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RequestKind {
    InitProducerId,
    EndOffset,
    Fetch,
    /// A fetch reading paged messages back (not part of an open).
    ReadFetch,
    BridgeFetch,
    Produce,
    EndTransaction,
    LatestActivation,
    JoinGroup,
    Heartbeat,
}

impl RequestKind {
    /// A request of the lock driver (the rest belong to the journal driver).
    pub(super) fn is_lock(self) -> bool {
        matches!(self, RequestKind::JoinGroup | RequestKind::Heartbeat)
    }
}

/// Applies `request` to the model; `None` when Kafka sends no answer.
pub(super) fn serve(
    kafka: &mut KafkaModel,
    now: Millis,
    request: KafkaRequest,
) -> Option<KafkaResponse> {
    let response = match request {
        KafkaRequest::InitProducerId { transactional_id } => {
            let (producer_id, producer_epoch) = kafka.init_producer_id(now, &transactional_id);
            KafkaResponse::ProducerId {
                producer_id,
                producer_epoch,
            }
        }
        KafkaRequest::EndOffset => KafkaResponse::EndOffset(
            kafka
                .end_offset_committed(now, JOURNAL_TOPIC, 0)
                .unwrap_or(0),
        ),
        KafkaRequest::Fetch { offset } => {
            match kafka.fetch_committed(now, JOURNAL_TOPIC, 0, offset, FETCH_RECORDS_MAX) {
                Ok(f) => KafkaResponse::Fetched(f),
                Err(_) => return None,
            }
        }
        KafkaRequest::Produce {
            transactional_id,
            producer_id,
            producer_epoch,
            sequence,
            records,
            bridged,
            writer,
        } => {
            let mut result = kafka.produce(
                now,
                &transactional_id,
                producer_id,
                producer_epoch,
                sequence,
                JOURNAL_TOPIC,
                0,
                &records,
                Some(writer),
            );
            // The bridged records join the same transaction (the implicit
            // AddPartitionsToTxn of each topic), one batch per topic with
            // the request's sequence, so a retry is not appended twice.
            if result.is_ok() {
                for (topic, batch) in by_topic(&bridged) {
                    kafka.create_plain_topic(topic, 1);
                    if let Err(e) = kafka.produce(
                        now,
                        &transactional_id,
                        producer_id,
                        producer_epoch,
                        sequence,
                        topic,
                        0,
                        &batch,
                        None,
                    ) {
                        result = Err(e);
                        break;
                    }
                }
            }
            KafkaResponse::Produced(result)
        }
        KafkaRequest::ProducePlain { bridged } => {
            for (topic, batch) in by_topic(&bridged) {
                kafka.create_plain_topic(topic, 1);
                let _ = kafka.produce_plain(now, topic, 0, &batch);
            }
            return None;
        }
        KafkaRequest::FetchTopic { topic, offset } => {
            kafka.create_plain_topic(&topic, 1);
            match kafka.fetch_committed(now, &topic, 0, offset, FETCH_RECORDS_MAX) {
                Ok(result) => KafkaResponse::TopicFetched { topic, result },
                Err(_) => return None,
            }
        }
        KafkaRequest::EndTransaction {
            transactional_id,
            producer_id,
            producer_epoch,
            commit,
        } => KafkaResponse::TransactionEnded(kafka.end_txn(
            now,
            &transactional_id,
            producer_id,
            producer_epoch,
            commit,
        )),
        KafkaRequest::LatestActivation => {
            KafkaResponse::LatestActivation(kafka.latest_committed(JOURNAL_TOPIC, 0, b"activation"))
        }
        KafkaRequest::JoinGroup { member } => {
            KafkaResponse::Group(Ok(kafka.join_group(now, LOCK_GROUP, &member)))
        }
        KafkaRequest::Heartbeat { member } => {
            KafkaResponse::Group(kafka.heartbeat(now, LOCK_GROUP, &member))
        }
        KafkaRequest::LeaveGroup { member } => {
            kafka.leave_group(now, LOCK_GROUP, &member);
            KafkaResponse::Left
        }
    };
    Some(response)
}

/// Bridged records grouped by topic, in order within each.
fn by_topic(bridged: &Bridged) -> BTreeMap<&str, Vec<(Bytes, Option<Bytes>)>> {
    let mut out: BTreeMap<&str, Vec<(Bytes, Option<Bytes>)>> = BTreeMap::new();
    for (topic, key, value) in bridged.iter() {
        out.entry(topic.as_str())
            .or_default()
            .push((key.clone(), Some(value.clone())));
    }
    out
}
