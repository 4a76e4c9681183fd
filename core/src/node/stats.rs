//! What the node holds and has done, read without changing anything: the
//! figures behind `/metrics`, the health endpoints and the management API
//! (io serves them over HTTP; the simulator checks them against its model).
//!
//! Counting is done where things happen (the broker counts per queue, the
//! pipeline times batches); [`Node::stats`] only copies.

use crate::broker::QueueCounters;
use crate::message::Routing;
use crate::Millis;

/// Upper bounds (ms) of the latency histograms' buckets; one more bucket
/// takes everything above the last. The node's clock counts milliseconds,
/// so finer buckets would say nothing.
pub const LATENCY_BUCKETS_MS: [u64; 14] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000,
];

/// A latency histogram with fixed buckets, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last one is above
    /// every bound.
    pub counts: [u64; LATENCY_BUCKETS_MS.len() + 1],
    pub sum_ms: u64,
    pub count: u64,
}

impl LatencyHistogram {
    pub fn observe(&mut self, ms: Millis) {
        let i = LATENCY_BUCKETS_MS.partition_point(|&b| b < ms);
        self.counts[i] += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
        self.count += 1;
    }

    /// (upper bound in ms, cumulative count) per bucket, as Prometheus
    /// writes them; the `+Inf` bucket is `count`.
    pub fn cumulative(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut total = 0;
        LATENCY_BUCKETS_MS.iter().enumerate().map(move |(i, &b)| {
            total += self.counts[i];
            (b, total)
        })
    }
}

/// Counters of the node's own work since the process started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeCounters {
    /// Kafka bridge: records written with journal batches.
    pub bridge_records_out: u64,
    /// Kafka bridge: record offsets ingested (made messages, or skipped).
    pub bridge_records_in: u64,
    /// Kafka bridge: outbox records Kafka acknowledged (local journal).
    pub bridge_forwarded: u64,
    /// Kafka bridge: records not read back because this cluster wrote them.
    pub bridge_loop_skipped: u64,
    /// Times this node obtained the live lock.
    pub lock_obtained: u64,
    /// Times it lost the lock while holding it (session lost, revoked).
    pub lock_lost: u64,
    /// Times it went live (activation record durable).
    pub activations: u64,
    /// Times a newer epoch fenced one of its writes.
    pub fenced: u64,
    /// Journal appends (batches) issued, and their entries.
    pub journal_batches: u64,
    pub journal_entries: u64,
    /// Appends the journal failed.
    pub journal_failures: u64,
    /// Client errors reported (ERROR frames, AMQP error closes).
    pub client_errors: u64,
    /// Logins refused (bad user name or password, unknown certificate user).
    pub login_failures: u64,
    /// Operations refused for want of a permission.
    pub authorization_denied: u64,
    /// Times the disk went above `--max-disk-usage` (producers stopped).
    pub disk_full: u64,
    /// Times the messages held reached `--max-memory-bytes`.
    pub memory_full: u64,
    /// Sends held back while producers were stopped (STOMP SENDs that
    /// waited; AMQP producers wait for credit instead, uncounted).
    pub sends_held: u64,
    /// Sends refused while full (`--address-full-policy fail`).
    pub sends_refused_full: u64,
    /// Paging: read requests sent to the journal, and messages read back.
    pub page_reads: u64,
    pub paged_in: u64,
    /// Append issued -> journal says durable.
    pub journal_latency: LatencyHistogram,
    /// A send (outside a transaction) taken -> its receipt (STOMP RECEIPT,
    /// AMQP `accepted`) due, in journal order.
    pub send_receipt_latency: LatencyHistogram,
}

/// Client connections by protocol.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionCounts {
    pub stomp: u64,
    pub amqp: u64,
    /// Connected, first bytes not seen yet.
    pub unknown: u64,
}

/// One queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStats {
    pub name: String,
    pub address: String,
    pub routing: Routing,
    pub durable: bool,
    /// Messages it references (ready, scheduled, delivered, settling).
    pub messages: u64,
    pub consumers: u64,
    pub counters: QueueCounters,
}

/// One client connection, as `/api/connections` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionStats {
    pub id: u64,
    /// `stomp`, `amqp`, or `unknown` (first bytes not seen yet).
    pub protocol: &'static str,
    /// When it opened (node clock: ms since the Unix epoch).
    pub opened_at_ms: Millis,
    /// Consumers (subscriptions, links) it has.
    pub consumers: u64,
    /// Deliveries it holds without an acknowledgement.
    pub unacknowledged: u64,
    /// Its operations waiting for the journal.
    pub in_flight: u64,
    pub transactions: u64,
    /// Reading paused for backpressure.
    pub paused: bool,
    /// The client's address: the node never sees sockets, so the driver
    /// fills this in.
    pub remote: Option<String>,
}

/// One address and its queues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressStats {
    pub name: String,
    /// How it routes: its declared routing, else that of its queues.
    pub routing: Routing,
    pub queues: u64,
    pub messages: u64,
    pub consumers: u64,
}

/// A snapshot of the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStats {
    pub node_id: String,
    /// `HaState::name`: live, backup, loading, activating, draining, ...
    pub state: &'static str,
    pub epoch: u32,
    /// Bound to the client port and taking clients.
    pub accepting: bool,
    /// The epoch that fenced this node, while it has not been live since.
    pub fenced_by: Option<u32>,
    pub connections: ConnectionCounts,
    /// Queues, largest first, at most the `max_queues` asked for.
    pub queues: Vec<QueueStats>,
    /// Queues there are (the list above may be cut short).
    pub queues_total: u64,
    /// Messages held in memory (each once, whatever the queues).
    pub messages: u64,
    /// Every queue's counters added up (listed or not).
    pub totals: QueueCounters,
    /// Addresses, the most messages first, at most `max_queues`.
    pub addresses: Vec<AddressStats>,
    /// Connections, oldest first, at most `max_queues`.
    pub connection_list: Vec<ConnectionStats>,
    pub counters: NodeCounters,
    /// The last reading of the journal's disk, if the driver reports one.
    pub disk: Option<super::DiskUsage>,
    /// Why producers are held back or refused now (`None`: they are not).
    pub producers_stopped: Option<String>,
    /// The messages' sizes added up (what `--max-memory-bytes` limits).
    pub memory_bytes: u64,
    /// Messages whose body is paged out (in the journal only).
    pub paged_messages: u64,
}

impl NodeStats {
    /// `Ok` while this node is live and taking clients; otherwise why not,
    /// in words for a load balancer's log.
    pub fn readiness(&self) -> Result<(), String> {
        match (self.state, self.accepting) {
            ("live", true) => Ok(()),
            ("live", false) => Err("live but not accepting clients".into()),
            ("backup", _) => Err(match self.fenced_by {
                Some(e) => format!("backup: fenced by epoch {e}, waiting for the live lock"),
                None => "backup: waiting for the live lock".into(),
            }),
            ("loading", _) | ("activating", _) => {
                Err(format!("{}: taking over as live", self.state))
            }
            (s, _) => Err(format!("{s}: not taking clients")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_take_their_upper_bound() {
        let mut h = LatencyHistogram::default();
        for ms in [0, 1, 2, 3, 30_000, 30_001] {
            h.observe(ms);
        }
        assert_eq!(h.count, 6);
        assert_eq!(h.sum_ms, 60_007);
        let cum: Vec<(u64, u64)> = h.cumulative().collect();
        assert_eq!(cum[0], (1, 2), "0 and 1 ms are at most 1 ms");
        assert_eq!(cum[1], (2, 3));
        assert_eq!(cum[2], (5, 4));
        assert_eq!(cum.last(), Some(&(30_000, 5)), "30001 ms only in +Inf");
        assert_eq!(h.counts[LATENCY_BUCKETS_MS.len()], 1);
    }
}
