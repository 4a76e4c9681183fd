//! The Kafka bridge, sans-IO: which addresses map to which Kafka topics
//! ([`routes`]), and how messages become records and records messages
//! ([`records`]). The node plans bridged records into journal batches and
//! ingested records into messages (`node/bridge.rs`); `halyard-io` reads
//! and writes Kafka.
//!
//! Out: with the Kafka journal a bridged record is produced in the same
//! Kafka transaction as the journal batch that stores the message, so a
//! receipt means the record is committed, and a fenced live's records are
//! aborted with its journal writes. In: the positions read are journaled in
//! the same batch as the messages they made, so a new live resumes exactly
//! where the old one's journal ends.

pub mod records;
pub mod routes;

pub use records::{InRecord, OutError, OutRecord, CLUSTER_HEADER};
pub use routes::{
    BodyKind, BridgeConfig, BridgeMode, Direction, HeaderNaming, Mapping, Route, RouteError,
    RouteSettings, RouteSpec, DEFAULT_PREFIX,
};

/// Records in one [`BridgeEvent::Records`] at most.
pub const RECORDS_PER_BATCH_MAX: usize = 10_000;

/// Where reading a partition resumes: the offset of the next record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub topic: String,
    pub partition: u32,
    pub next_offset: u64,
}

/// What the bridge's Kafka reader reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BridgeEvent {
    /// Records of one partition, in offset order (at most
    /// [`RECORDS_PER_BATCH_MAX`]). Answered by [`BridgeRequest::Ingested`].
    Records {
        topic: String,
        partition: u32,
        records: Vec<InRecord>,
    },
    /// Kafka acknowledged these outbox records: they leave the outbox.
    Forwarded { ids: Vec<crate::ids::Id> },
}

/// What the node asks of the bridge's Kafka reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BridgeRequest {
    /// Now live: read bridged topics, each partition from its journaled
    /// position (a partition without one from its beginning). `subscribed`
    /// are the bridged addresses that have subscriptions now (a topic
    /// whose route does not read always is read only while its address has).
    Start {
        positions: Vec<Position>,
        subscribed: Vec<String>,
    },
    /// The bridged addresses with subscriptions changed.
    Subscribed { addresses: Vec<String> },
    /// Records of this partition before `next_offset` are durable (or were
    /// skipped). Resume reading there: it is also where the node stopped
    /// if it could not take all the records it was given.
    Ingested(Position),
    /// Forward these outbox records to Kafka (local journal), in order;
    /// answered by [`BridgeEvent::Forwarded`]. `again`: they were in the
    /// outbox when this node went live, so an earlier live may have
    /// forwarded them already (the duplicates of at-least-once).
    Forward {
        records: Vec<(crate::ids::Id, std::sync::Arc<OutRecord>)>,
        again: bool,
    },
    /// Not live any more: stop reading (and forwarding).
    Stop,
}
