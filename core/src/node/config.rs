//! What a node is configured with.

use crate::broker::{BrokerConfig, DestinationConfig};
use crate::ha::Role;
use crate::protocol::amqp::connection::ConnectionConfig;
use crate::protocol::amqp::jms;
use crate::protocol::stomp::Limits;

/// Everything a node is configured with. Time and randomness are not here:
/// they arrive as inputs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Name written into activation records and logs.
    pub node_id: String,
    pub role: Role,
    /// A returning primary takes the live role back from a backup.
    pub allow_failback: bool,
    pub limits: Limits,
    pub destinations: DestinationConfig,
    pub broker: BrokerConfig,
    /// Heart-beat interval the server offers and asks for (ms); 0 disables.
    pub heartbeat_ms: u64,
    /// A connection that sends no CONNECT within this time is closed.
    pub connect_timeout_ms: u64,
    /// Operations of one connection waiting for the journal before its reading pauses.
    pub conn_inflight_max: usize,
    /// Open transactions per connection.
    pub transactions_per_conn_max: usize,
    /// Operations (sends and acknowledgements) in one transaction.
    pub transaction_ops_max: usize,
    /// Body bytes in one transaction.
    pub transaction_bytes_max: usize,
    /// How long a failback or shutdown waits for pending journal work.
    pub drain_timeout_ms: u64,
    /// Pause before asking for the lock again after a failed activation.
    pub activation_retry_ms: u64,
    /// AMQP connections: what the open frame offers and every limit a peer
    /// can push on.
    pub amqp: ConnectionConfig,
    /// The Kafka bridge (`None`: off).
    pub bridge: Option<crate::bridge::BridgeConfig>,
    /// Users and permissions (`None`: anonymous clients, everything allowed).
    pub security: Option<std::sync::Arc<crate::security::Security>>,
    /// Client connections at most; more are refused in their protocol.
    pub connections_max: usize,
    /// Connections that have not completed their handshake (STOMP
    /// CONNECT, AMQP open), at most.
    pub pending_connections_max: usize,
    /// What a send meets while the broker is full (`--address-full-policy`).
    pub address_full_policy: FullPolicy,
    /// Producers are held back (or refused, under `fail`) while the
    /// journal's disk is used above this, in tenths of a percent
    /// (`--max-disk-usage 90` is 900; 1000: only a full disk).
    pub disk_usage_max_permille: u32,
    /// Producers are held back (or refused, under `fail`) while the
    /// messages held add up to this many bytes (`Message::size_bytes`);
    /// 0: no limit.
    pub memory_max_bytes: u64,
    /// The journal driver answers `JournalRequest::Read` (the local
    /// journal and the simulator's do): under the `page` policy the node
    /// then pages message bodies to the journal above
    /// `PAGE_START_PERMILLE` of `memory_max_bytes` instead of holding
    /// producers back.
    pub journal_reads: bool,
    /// A deliberate bug (simulator self-tests only).
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<PlantedBug>,
}

/// Deliberate bugs the simulator's checker must catch. They can only be
/// switched on with the `planted-bugs` feature (simulator tests).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// Answer sends (RECEIPT) and apply acks before the journal says durable.
    ReceiptBeforeDurable,
    /// Go live after the first chunk of the journal instead of its end.
    AcceptBeforeLoaded,
    /// Journal the ack of a client-acknowledged message when it is delivered,
    /// not when the client's ACK is durable.
    RemoveBeforeAckDurable,
    /// Keep the previous activation's epoch, so ids repeat.
    ReuseIds,
    /// Settle an AMQP transfer `accepted` as soon as it arrives, before the
    /// journal says it is durable.
    AmqpAcceptBeforeDurable,
    /// Answer an AMQP discharge (commit) `accepted` as soon as it arrives,
    /// before the transaction's batch is durable.
    AmqpDischargeBeforeDurable,
    /// Answer a management change (purge, move, delete) as done as soon as
    /// it is asked for, before its batch is durable.
    AdminAnswerBeforeDurable,
    /// Journal the Kafka bridge's position one record past the end of the
    /// batch it ingested (an off-by-one), so the next record is skipped.
    BridgePositionAhead,
    /// Execute every operation without checking the security file's
    /// permissions.
    PermissionsIgnored,
    /// Take sends while the broker is full (the disk above
    /// `--max-disk-usage`, or messages at `--max-memory-bytes`).
    DiskLimitIgnored,
    /// Dispatch looks past a paged message and delivers what is behind it
    /// while the paged one is read back.
    PagingOutOfOrder,
}

/// Under the `page` policy, messages stored once the broker holds this
/// share of `--max-memory-bytes` (in tenths of a percent) are paged: the
/// rest of the limit is room for the messages read back for consumers.
pub const PAGE_START_PERMILLE: u64 = 900;

impl NodeConfig {
    /// The bytes of messages held above which newly stored ones are paged,
    /// from this node's limits and journal (0: no paging).
    pub fn page_above_bytes(&self) -> u64 {
        let paging = self.journal_reads
            && self.address_full_policy == FullPolicy::Page
            && self.memory_max_bytes > 0;
        if paging {
            ((self.memory_max_bytes as u128 * PAGE_START_PERMILLE as u128) / 1000) as u64
        } else {
            0
        }
    }

    /// The broker's configuration with the paging threshold this node's
    /// limits and journal give (0: no paging).
    pub(crate) fn broker_config(&self) -> BrokerConfig {
        BrokerConfig {
            page_above_bytes: self.page_above_bytes(),
            #[cfg(feature = "planted-bugs")]
            planted_paging_out_of_order: self.planted_bug == Some(PlantedBug::PagingOutOfOrder),
            ..self.broker.clone()
        }
    }
}

impl NodeConfig {
    /// Users log in: the security file, and AMQP offers only SASL PLAIN
    /// and refuses a client that skips SASL.
    pub fn set_security(&mut self, security: std::sync::Arc<crate::security::Security>) {
        self.security = Some(security);
        self.amqp.sasl_mechanisms = vec![crate::protocol::amqp::Symbol::from("PLAIN")];
        self.amqp.sasl_required = true;
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_id: "halyard".into(),
            role: Role::Primary,
            allow_failback: false,
            limits: Limits::default(),
            destinations: DestinationConfig::default(),
            broker: BrokerConfig::default(),
            heartbeat_ms: 10_000,
            connect_timeout_ms: 30_000,
            conn_inflight_max: 10_000,
            transactions_per_conn_max: 64,
            transaction_ops_max: 100_000,
            transaction_bytes_max: 64 * 1024 * 1024,
            drain_timeout_ms: 5_000,
            activation_retry_ms: 1_000,
            amqp: amqp_defaults(),
            bridge: None,
            security: None,
            connections_max: 10_000,
            pending_connections_max: 1_000,
            address_full_policy: FullPolicy::Page,
            disk_usage_max_permille: 900,
            memory_max_bytes: 0,
            journal_reads: false,
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }
}

/// What an AMQP client is offered: Qpid JMS needs ANONYMOUS-RELAY for
/// producers without a destination, SHARED-SUBS for shared subscriptions,
/// DELAYED_DELIVERY for delivery delays.
pub fn amqp_defaults() -> ConnectionConfig {
    ConnectionConfig {
        offered_capabilities: vec![
            jms::ANONYMOUS_RELAY.into(),
            jms::SHARED_SUBS.into(),
            jms::DELAYED_DELIVERY.into(),
        ],
        ..ConnectionConfig::default()
    }
}

/// What happens to a send while the broker is full (Artemis's names).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum FullPolicy {
    /// Beyond the memory limit, bodies go to disk; a full disk blocks.
    #[default]
    Page,
    /// Producers wait (flow control, no error) until there is room.
    Block,
    /// Sends are refused with an error until there is room.
    Fail,
}

impl FullPolicy {
    pub const ALL: [FullPolicy; 3] = [FullPolicy::Page, FullPolicy::Block, FullPolicy::Fail];

    pub fn as_str(self) -> &'static str {
        match self {
            FullPolicy::Page => "page",
            FullPolicy::Block => "block",
            FullPolicy::Fail => "fail",
        }
    }

    pub fn parse(text: &str) -> Option<FullPolicy> {
        FullPolicy::ALL.into_iter().find(|p| p.as_str() == text)
    }
}
