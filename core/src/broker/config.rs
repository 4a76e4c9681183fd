//! Broker limits and policies.

/// Broker limits and policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Deliveries before a message goes to the dead-letter address (Artemis default 10).
    pub delivery_attempts_max: u32,
    /// Where undeliverable messages go (Artemis default `DLQ`).
    pub dead_letter_address: String,
    /// Where expired messages go (Artemis default `ExpiryQueue`).
    pub expiry_address: String,
    /// How often queues are scanned for expired messages nobody consumes
    /// (Artemis's `message-expiry-scan-period`, 30 s).
    pub expiry_scan_period_ms: u64,
    /// Expired references one scan step moves; a longer scan continues on
    /// the next tick, and dispatch leaves more than this many in line for it.
    pub expiry_batch_max: usize,
    /// Scheduled messages released in one step; more wait for the next tick.
    pub scheduled_release_max: usize,
    /// Messages dispatch looks past in one queue (ones its consumers'
    /// filters refuse, or expired ones beyond `expiry_batch_max`) before
    /// it stops until the queue changes.
    pub dispatch_skip_max: usize,
    /// Unflushed bytes a connection may hold before deliveries to it pause.
    pub connection_outbound_bytes_max: usize,
    /// Default `consumer-window-size` in bytes of unacknowledged messages; -1 is unbounded.
    pub consumer_window_bytes_default: i64,
    /// Messages (durable or not) the broker holds before refusing sends.
    pub messages_max: usize,
    /// Remembered duplicate-detection ids per address.
    pub duplicate_ids_per_address_max: usize,
    /// Above this many bytes held, newly stored journaled messages are
    /// paged: their bodies stay in the journal until a consumer reaches
    /// them (see `paging.rs`). 0: never.
    pub page_above_bytes: u64,
    /// Planted bug `PagingOutOfOrder` (simulator self-tests only).
    #[cfg(feature = "planted-bugs")]
    pub planted_paging_out_of_order: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            delivery_attempts_max: 10,
            dead_letter_address: "DLQ".into(),
            expiry_address: "ExpiryQueue".into(),
            expiry_scan_period_ms: 30_000,
            expiry_batch_max: 10_000,
            scheduled_release_max: 10_000,
            dispatch_skip_max: 100_000,
            connection_outbound_bytes_max: 4 * 1024 * 1024,
            consumer_window_bytes_default: -1,
            messages_max: 10_000_000,
            duplicate_ids_per_address_max: 20_000,
            page_above_bytes: 0,
            #[cfg(feature = "planted-bugs")]
            planted_paging_out_of_order: false,
        }
    }
}
