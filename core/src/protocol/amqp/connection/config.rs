//! What the owner decides about a connection: what we advertise in open,
//! and a bound on everything a peer can make us hold.

use crate::protocol::amqp::{DecodeLimits, Map, Symbol};

/// Settings and limits of one server-side connection.
#[derive(Clone, Debug)]
pub struct ConnectionConfig {
    /// Our container-id in open.
    pub container_id: String,
    /// The largest frame we accept, advertised in open (at least 512).
    pub max_frame_size: u32,
    /// The highest channel number a peer may use, advertised in open.
    pub channel_max: u16,
    /// Close the connection when nothing arrives for this long; advertised
    /// in open. 0 disables it.
    pub idle_timeout_ms: u32,
    /// Offered in open, e.g. ANONYMOUS-RELAY, SHARED-SUBS, DELAYED_DELIVERY.
    pub offered_capabilities: Vec<Symbol>,
    /// Open properties, e.g. a failover-server-list.
    pub properties: Option<Map>,
    /// Refuse a client that skips SASL (sends the AMQP header first).
    pub sasl_required: bool,
    /// SASL mechanisms offered, in order of preference (ANONYMOUS and
    /// PLAIN are the ones understood).
    pub sasl_mechanisms: Vec<Symbol>,
    /// Most sessions at once.
    pub sessions_max: usize,
    /// The highest link handle a peer may use, advertised in begin.
    pub handle_max: u32,
    /// Most links at once on one session.
    pub links_per_session_max: usize,
    /// Transfer frames a peer may send before we widen the window again,
    /// advertised in begin.
    pub session_incoming_window: u32,
    /// Largest message (all frames of one delivery) we accept, advertised
    /// as max-message-size in attach.
    pub message_size_max: u64,
    /// Most bytes of partly received multi-frame messages, all links
    /// together.
    pub reassembly_bytes_max: usize,
    /// Most unsettled deliveries per session in each direction.
    pub unsettled_per_session_max: usize,
    /// Most bytes of outgoing transfers queued on one session while the
    /// peer's session window is closed.
    pub queued_bytes_per_session_max: usize,
    /// Most input bytes buffered before they are decoded.
    pub pending_input_bytes_max: usize,
    /// The client must finish header, SASL and open within this time.
    pub open_timeout_ms: u64,
    /// After we send close, how long we wait for the peer's close before
    /// dropping the transport.
    pub close_timeout_ms: u64,
    /// Bounds on decoding performatives.
    pub decode: DecodeLimits,
}

impl Default for ConnectionConfig {
    fn default() -> ConnectionConfig {
        ConnectionConfig {
            container_id: "halyard".to_owned(),
            max_frame_size: 64 * 1024,
            channel_max: 255,
            idle_timeout_ms: 30_000,
            offered_capabilities: Vec::new(),
            properties: None,
            sasl_required: false,
            sasl_mechanisms: vec![Symbol::from("ANONYMOUS"), Symbol::from("PLAIN")],
            sessions_max: 64,
            handle_max: 1023,
            links_per_session_max: 256,
            session_incoming_window: 2048,
            message_size_max: 100 * 1024 * 1024,
            reassembly_bytes_max: 128 * 1024 * 1024,
            unsettled_per_session_max: 65_536,
            queued_bytes_per_session_max: 16 * 1024 * 1024,
            pending_input_bytes_max: 4 * 1024 * 1024,
            open_timeout_ms: 30_000,
            close_timeout_ms: 5_000,
            decode: DecodeLimits::default(),
        }
    }
}
