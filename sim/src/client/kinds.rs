//! What a simulated client is and says, whatever protocol it speaks: its
//! kind, the actions the world carries out for it, the deliveries it
//! records for the checker, and what its protocol tells it.

use bytes::Bytes;
use halyard_core::Millis;

/// Header (STOMP) or application property (AMQP) naming the producer of a
/// simulated message.
pub const PRODUCER: &str = "sim-producer";
/// Header or application property with the producer's sequence number.
pub const SEQ: &str = "sim-seq";
/// Header or application property naming the destination the producer
/// sent to (kept through dead-lettering).
pub const ORIGIN: &str = "sim-origin";
/// Artemis's duplicate-detection header and application property.
pub const DUPLICATE_ID: &str = "_AMQ_DUPL_ID";

#[derive(Clone, Debug)]
pub enum Action {
    Connect {
        node: usize,
    },
    Send(Bytes),
    Close,
    Timer(Millis),
    Trace(String),
    /// A per-message line: kept in a printed trace, not hashed (so runs
    /// without a trace need not format it).
    Detail(String),
}

/// The protocol a client speaks to the broker.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    Stomp,
    Amqp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckStyle {
    /// Settle each message on its own: STOMP client-individual ACK or
    /// NACK; AMQP accepted, or released / modified (delivery-failed).
    Individual,
    /// STOMP client mode: ACK each message, which acknowledges everything
    /// before it. AMQP: one accepted disposition for a range of deliveries.
    Cumulative,
    /// Acknowledgements grouped in transactions of a few messages (STOMP
    /// BEGIN/ACK/COMMIT; AMQP through the transaction coordinator).
    Transactional,
    /// The broker counts a message consumed once sent, at most once (STOMP
    /// auto; AMQP pre-settled deliveries).
    Auto,
}

#[derive(Clone, Debug)]
pub enum Kind {
    Producer {
        /// In STOMP spelling (`/queue/orders`); AMQP clients send to the
        /// address with the `queue` or `topic` capability.
        destination: String,
        total: u64,
        window: usize,
        duplicate_ids: bool,
        /// Messages per transaction; None sends plain messages.
        transaction_size: Option<usize>,
        /// Wait until every durable subscription exists before sending.
        wait_for_subscriptions: bool,
    },
    Consumer {
        destination: String,
        ack: AckStyle,
        /// Durable subscription: (client id, subscription name).
        durable: Option<(String, String)>,
        /// Chance of giving a message back instead of accepting it
        /// (`Individual` consumers only).
        nack_chance: f64,
    },
}

/// How a consumer settles one delivery.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Settle {
    Accept,
    /// Back for redelivery as a failed delivery (STOMP NACK, AMQP modified
    /// with delivery-failed): the next copy is flagged redelivered.
    Requeue,
    /// Back as if never delivered (AMQP released): the next copy is not
    /// flagged, so the consumer remembers that it gave it back.
    Release,
}

/// One message as a consumer saw it.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub producer: String,
    pub seq: u64,
    pub origin: String,
    /// The broker's message id where the protocol shows it (STOMP's
    /// `message-id`); empty where it does not (AMQP).
    pub message_id: String,
    pub redelivered: bool,
    /// The consumer released it: a later copy needs no redelivered flag.
    pub released: bool,
    /// When the broker answered the commit of a transaction that accepted
    /// it (AMQP coordinator discharge): from then on it is consumed for good.
    pub committed_at: Option<Millis>,
    /// Connection session of the consumer (changes on every reconnect).
    pub session: u64,
    pub at: Millis,
}

/// A message as the protocol decoded it, before the consumer records it.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub producer: String,
    pub seq: u64,
    pub origin: String,
    pub message_id: String,
    pub redelivered: bool,
    /// How the protocol finds this delivery again to settle it: the AMQP
    /// delivery id, or the STOMP `ack` header as sent.
    pub token: u64,
    pub ack_id: String,
}

/// What a client's protocol tells it, in order.
#[derive(Clone, Debug)]
pub enum WireEvent {
    /// The connection is up: a producer may send, a consumer subscribes
    /// (or is subscribing).
    Connected,
    /// The subscription exists.
    Subscribed,
    /// These sends are acknowledged: a RECEIPT, an AMQP `accepted`, the
    /// answered commit of their transaction.
    Acknowledged(Vec<u64>),
    Delivered(Incoming),
    /// The commit of a transaction accepting these deliveries (tokens) was
    /// answered.
    AcceptsCommitted(Vec<u64>),
    /// Worth a trace line.
    Note(String),
    /// Give up on this connection (a refusal, a rolled-back transaction, a
    /// protocol error): the client reconnects and resends.
    Broken(String),
}

/// `n` in decimal, as `to_string` writes it (without the formatting machinery).
pub fn decimal(mut n: u64) -> String {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // One allocation of the right size (collecting chars grows the string).
    String::from(std::str::from_utf8(&digits[i..]).expect("ASCII digits"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal_is_to_string() {
        for n in [0, 1, 9, 10, 99, 100, 12_345, u64::MAX] {
            assert_eq!(super::decimal(n), n.to_string());
        }
    }
}
