//! What a node's drivers ask of Kafka, what Kafka answers, and the Kafka
//! side that applies a request to the model.

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
        writer: Writer,
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
            writer,
        } => KafkaResponse::Produced(kafka.produce(
            now,
            &transactional_id,
            producer_id,
            producer_epoch,
            sequence,
            JOURNAL_TOPIC,
            0,
            &records,
            Some(writer),
        )),
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
