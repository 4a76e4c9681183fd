//! Broker limits and policies.

/// Broker limits and policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Deliveries before a message goes to the dead-letter address (Artemis default 10).
    pub delivery_attempts_max: u32,
    /// Where undeliverable messages go (Artemis default `DLQ`).
    pub dead_letter_address: String,
    /// Unflushed bytes a connection may hold before deliveries to it pause.
    pub connection_outbound_bytes_max: usize,
    /// Default `consumer-window-size` in bytes of unacknowledged messages; -1 is unbounded.
    pub consumer_window_bytes_default: i64,
    /// Messages (durable or not) the broker holds before refusing sends.
    pub messages_max: usize,
    /// Remembered duplicate-detection ids per address.
    pub duplicate_ids_per_address_max: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            delivery_attempts_max: 10,
            dead_letter_address: "DLQ".into(),
            connection_outbound_bytes_max: 4 * 1024 * 1024,
            consumer_window_bytes_default: -1,
            messages_max: 10_000_000,
            duplicate_ids_per_address_max: 20_000,
        }
    }
}
