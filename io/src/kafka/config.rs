//! How a node reaches Kafka and names its cluster's topics.

use std::time::Duration;

use rdkafka::config::ClientConfig;

/// How a node reaches Kafka and names its cluster's topics.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// Names the journal topic, the lock group and the transactional id.
    pub cluster_id: String,
    /// Extra client properties for every client (TLS, SASL, timeouts).
    pub properties: Vec<(String, String)>,
    /// Replication factor for the topics Halyard creates.
    pub replication_factor: i32,
    /// `transaction.timeout.ms` of the journal producer.
    pub transaction_timeout_ms: u64,
    /// Bound on one Kafka operation (init, commit, metadata).
    pub operation_timeout_ms: u64,
    /// Where the journal and its standby copy count what they do.
    pub metrics: std::sync::Arc<crate::metrics::JournalMetrics>,
    /// Partitions of a Kafka bridge topic Halyard creates.
    pub bridge_topic_partitions: i32,
    /// Key and value bytes of message records the standby copy keeps in
    /// full (the node's paging threshold); past it, their offsets only
    /// (0: no bound).
    pub standby_message_bytes_max: u64,
}

impl KafkaConfig {
    pub fn new(bootstrap: impl Into<String>, cluster_id: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            bootstrap: bootstrap.into(),
            cluster_id: cluster_id.into(),
            properties: Vec::new(),
            replication_factor: 1,
            transaction_timeout_ms: 60_000,
            operation_timeout_ms: 10_000,
            metrics: std::sync::Arc::new(crate::metrics::JournalMetrics::new()),
            bridge_topic_partitions: 1,
            standby_message_bytes_max: 0,
        }
    }

    pub fn journal_topic(&self) -> String {
        format!("halyard-{}-journal", self.cluster_id)
    }

    pub(crate) fn lock_topic(&self) -> String {
        format!("halyard-{}-lock", self.cluster_id)
    }

    pub fn lock_group(&self) -> String {
        format!("halyard-{}-lock", self.cluster_id)
    }

    /// Fixed per cluster: every live uses it, so each new live fences the last.
    pub fn transactional_id(&self) -> String {
        format!("halyard-{}-journal", self.cluster_id)
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.operation_timeout_ms)
    }

    /// A client config with the bootstrap servers and the passthrough properties.
    pub(crate) fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c.set("client.id", format!("halyard-{}", self.cluster_id));
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}
