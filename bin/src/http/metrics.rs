//! `/metrics`: one snapshot of the node written in the OpenMetrics text
//! format by `prometheus-client` (Prometheus scrapes it as is). Names
//! follow Prometheus conventions: `halyard_` first, the unit last,
//! counters end in `_total` (the encoder adds it).

use std::sync::atomic::Ordering;

use halyard_core::message::Routing;
use halyard_core::node::{LatencyHistogram, NodeStats, QueueStats, LATENCY_BUCKETS_MS};
use halyard_io::metrics::{
    JournalMetrics, COMPACTION_STALL_BUCKETS_US, GROUP_BATCH_BUCKETS, WRITE_BUCKETS_US,
};
use halyard_io::server::IoCounters;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// The HA states reported by `halyard_ha_state` (one series each, 1 for
/// the current one: a new state shows as a new series, never a missing one).
pub const HA_STATES: [&str; 8] = [
    "not-started",
    "backup",
    "loading",
    "activating",
    "live",
    "draining",
    "stopped",
    "fenced",
];

/// Everything one scrape writes.
#[derive(Debug)]
pub struct Snapshot {
    pub stats: NodeStats,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connections_accepted: u64,
    pub http_login_failures: u64,
    pub uptime_seconds: f64,
    pub group_commits: u64,
    /// Per bucket of `GROUP_BATCH_BUCKETS` (not cumulative), then above.
    pub group_batches: Vec<u64>,
    pub group_batches_sum: u64,
    /// Per bucket of `COMPACTION_STALL_BUCKETS_US` (not cumulative), then
    /// above; their sum and the longest, in µs.
    pub compaction_stalls: Vec<u64>,
    pub compaction_stall_sum_us: u64,
    pub compaction_stall_max_us: u64,
    /// Per bucket of `WRITE_BUCKETS_US` (not cumulative), then above; their
    /// sum and the longest, in µs.
    pub writes: Vec<u64>,
    pub write_sum_us: u64,
    pub write_max_us: u64,
    pub journal_bytes: u64,
    pub fsyncs: u64,
    pub kafka_commits: u64,
    pub kafka_aborts: u64,
    /// `None` while no standby copy is followed.
    pub standby_lag_records: Option<u64>,
    /// `None` while this broker does not stream to mirror peers.
    pub mirror: Option<MirrorSnapshot>,
}

/// Mirroring's figures (`JournalMetrics::mirror_*`).
#[derive(Debug)]
pub struct MirrorSnapshot {
    pub unacknowledged_groups: u64,
    pub outbox_groups: u64,
    pub outbox_bytes: u64,
    pub peers_streaming: u64,
    pub answers_held: u64,
    pub snapshots: u64,
}

impl Snapshot {
    pub fn new(
        stats: NodeStats,
        io: &IoCounters,
        j: &JournalMetrics,
        uptime_seconds: f64,
    ) -> Snapshot {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            stats,
            bytes_in: load(&io.bytes_in),
            bytes_out: load(&io.bytes_out),
            connections_accepted: load(&io.connections_accepted),
            http_login_failures: load(&io.http_login_failures),
            uptime_seconds,
            group_commits: load(&j.group_commits),
            group_batches: j.group_batches.iter().map(load).collect(),
            group_batches_sum: load(&j.group_batches_sum),
            compaction_stalls: j.compaction_stalls.iter().map(load).collect(),
            compaction_stall_sum_us: load(&j.compaction_stall_sum_us),
            compaction_stall_max_us: load(&j.compaction_stall_max_us),
            writes: j.writes.iter().map(load).collect(),
            write_sum_us: load(&j.write_sum_us),
            write_max_us: load(&j.write_max_us),
            journal_bytes: load(&j.bytes_written),
            fsyncs: load(&j.fsyncs),
            kafka_commits: load(&j.kafka_commits),
            kafka_aborts: load(&j.kafka_aborts),
            standby_lag_records: u64::try_from(j.standby_lag_records.load(Ordering::Relaxed)).ok(),
            mirror: u64::try_from(j.mirror_unacknowledged_groups.load(Ordering::Relaxed))
                .ok()
                .map(|unacknowledged_groups| MirrorSnapshot {
                    unacknowledged_groups,
                    outbox_groups: load(&j.mirror_outbox_groups),
                    outbox_bytes: load(&j.mirror_outbox_bytes),
                    peers_streaming: load(&j.mirror_peers_streaming),
                    answers_held: load(&j.mirror_answers_held),
                    snapshots: load(&j.mirror_snapshots),
                }),
        }
    }

    /// The current HA state as `halyard_ha_state` names it: a backup that
    /// was fenced and has not been live since is `fenced`.
    pub fn ha_state(&self) -> &'static str {
        match (self.stats.state, self.stats.fenced_by) {
            ("backup", Some(_)) => "fenced",
            (s, _) => s,
        }
    }

    /// The text a scrape returns.
    pub fn encode(self) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

type Labels<'a> = [(&'static str, &'a str)];

/// A per-queue family: name, help, type and how to read it.
type PerQueue = (
    &'static str,
    &'static str,
    MetricType,
    fn(&QueueStats) -> u64,
);

fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let m = e.encode_descriptor(name, help, unit, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

fn gauge(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: f64,
) -> Result<(), std::fmt::Error> {
    let m = e.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

/// A histogram of durations counted in µs per bucket (not cumulative, the
/// last above every bound), in seconds.
fn micros_histogram(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    bounds_us: &[u64],
    counts: &[u64],
    sum_us: u64,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    let mut buckets: Vec<(f64, u64)> = bounds_us
        .iter()
        .zip(counts)
        .map(|(&b, &c)| (b as f64 / 1e6, c))
        .collect();
    buckets.push((f64::INFINITY, counts.last().copied().unwrap_or(0)));
    m.encode_histogram::<NoLabelSet>(sum_us as f64 / 1e6, counts.iter().sum(), &buckets, None)
}

/// A family: one series per label set.
fn family<'v>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl Iterator<Item = (Vec<(&'static str, &'v str)>, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in series {
        let labels: &Labels<'_> = &labels;
        let f = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(v as u64).encode(f)?,
            _ => ConstGauge::new(v).encode(f)?,
        }
    }
    Ok(())
}

fn histogram(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    h: &LatencyHistogram,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_MS
        .iter()
        .zip(h.counts.iter())
        .map(|(&b, &c)| (b as f64 / 1000.0, c))
        .collect();
    buckets.push((f64::INFINITY, h.counts[LATENCY_BUCKETS_MS.len()]));
    m.encode_histogram::<NoLabelSet>(h.sum_ms as f64 / 1000.0, h.count, &buckets, None)
}

fn q_labels(q: &QueueStats) -> Vec<(&'static str, &str)> {
    vec![
        ("queue", q.name.as_str()),
        ("address", q.address.as_str()),
        ("routing", routing(q.routing)),
    ]
}

/// A routing as the labels and the API's JSON spell it.
pub(crate) fn routing(r: Routing) -> &'static str {
    match r {
        Routing::Anycast => "anycast",
        Routing::Multicast => "multicast",
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        let c = &s.counters;
        let e = &mut e;
        let node = s.node_id.as_str();
        family(
            e,
            "halyard_node_info",
            "The node's name and version (always 1).",
            MetricType::Gauge,
            std::iter::once((
                vec![("node", node), ("version", env!("CARGO_PKG_VERSION"))],
                1.0,
            )),
        )?;
        let state = self.ha_state();
        family(
            e,
            "halyard_ha_state",
            "1 for the node's HA state now (fenced: stepped down after a newer epoch fenced it, not live since), 0 for the others.",
            MetricType::Gauge,
            HA_STATES
                .iter()
                .map(|&st| (vec![("state", st)], f64::from(u8::from(st == state)))),
        )?;
        gauge(
            e,
            "halyard_ha_epoch",
            "Activation epoch of the node's current or last live period.",
            None,
            f64::from(s.epoch),
        )?;
        gauge(
            e,
            "halyard_accepting_clients",
            "1 while the node is live and its client port is open.",
            None,
            f64::from(u8::from(s.accepting)),
        )?;
        counter(
            e,
            "halyard_lock_obtained",
            "Times this node obtained the live lock (sum over the nodes: lock holder changes).",
            None,
            c.lock_obtained,
        )?;
        counter(
            e,
            "halyard_lock_lost",
            "Times this node lost the live lock while holding it.",
            None,
            c.lock_lost,
        )?;
        counter(
            e,
            "halyard_activations",
            "Times this node went live.",
            None,
            c.activations,
        )?;
        counter(
            e,
            "halyard_fenced",
            "Times a newer epoch fenced this node's writes.",
            None,
            c.fenced,
        )?;
        gauge(
            e,
            "halyard_uptime",
            "Seconds since the process started.",
            Some(&Unit::Seconds),
            self.uptime_seconds,
        )?;
        let conns = s.connections;
        family(
            e,
            "halyard_connections",
            "Client connections open now, by protocol (unknown: first bytes not seen yet).",
            MetricType::Gauge,
            [
                ("stomp", conns.stomp),
                ("amqp", conns.amqp),
                ("unknown", conns.unknown),
            ]
            .into_iter()
            .map(|(p, n)| (vec![("protocol", p)], n as f64)),
        )?;
        counter(
            e,
            "halyard_connections_accepted",
            "Client connections accepted since start.",
            None,
            self.connections_accepted,
        )?;
        counter(
            e,
            "halyard_received",
            "Bytes read from client connections.",
            Some(&Unit::Bytes),
            self.bytes_in,
        )?;
        counter(
            e,
            "halyard_sent",
            "Bytes written to client connections.",
            Some(&Unit::Bytes),
            self.bytes_out,
        )?;
        counter(
            e,
            "halyard_client_errors",
            "Errors reported to clients (STOMP ERROR frames, AMQP error closes).",
            None,
            c.client_errors,
        )?;
        counter(
            e,
            "halyard_login_failures",
            "Logins refused: STOMP CONNECT, AMQP SASL, TLS client certificates naming no user, HTTP management.",
            None,
            c.login_failures + self.http_login_failures,
        )?;
        counter(
            e,
            "halyard_authorization_denied",
            "Client operations refused for want of a permission.",
            None,
            c.authorization_denied,
        )?;
        if let Some(d) = s.disk {
            gauge(
                e,
                "halyard_disk_used",
                "Share of the journal's disk in use, as df counts it (0 to 1); compared with --max-disk-usage.",
                Some(&Unit::Ratios),
                d.used_bytes as f64 / d.total_bytes.max(1) as f64,
            )?;
            gauge(
                e,
                "halyard_disk_size",
                "Size of the journal's disk as df counts it (used plus available).",
                Some(&Unit::Bytes),
                d.total_bytes as f64,
            )?;
        }
        gauge(
            e,
            "halyard_memory_messages",
            "The messages held, their sizes added up (bodies and headers); compared with --max-memory-bytes.",
            Some(&Unit::Bytes),
            s.memory_bytes as f64,
        )?;
        counter(
            e,
            "halyard_memory_full",
            "Times the messages held reached --max-memory-bytes.",
            None,
            c.memory_full,
        )?;
        gauge(
            e,
            "halyard_paged_messages",
            "Messages whose body is paged out: in the journal only, read back when a consumer reaches them.",
            None,
            s.paged_messages as f64,
        )?;
        counter(
            e,
            "halyard_page_reads",
            "Reads of paged messages the node asked of the journal.",
            None,
            c.page_reads,
        )?;
        counter(
            e,
            "halyard_paged_in",
            "Paged messages read back from the journal.",
            None,
            c.paged_in,
        )?;
        gauge(
            e,
            "halyard_producers_blocked",
            "1 while producers are held back or refused (the disk above --max-disk-usage, or messages at --max-memory-bytes), else 0.",
            None,
            f64::from(u8::from(s.producers_stopped.is_some())),
        )?;
        counter(
            e,
            "halyard_disk_full",
            "Times the journal's disk went above --max-disk-usage.",
            None,
            c.disk_full,
        )?;
        counter(
            e,
            "halyard_sends_held",
            "STOMP sends held back while producers were blocked (AMQP producers wait for credit instead).",
            None,
            c.sends_held,
        )?;
        counter(
            e,
            "halyard_sends_refused_full",
            "Sends refused while full (--address-full-policy fail).",
            None,
            c.sends_refused_full,
        )?;
        counter(
            e,
            "halyard_journal_append_batches",
            "Journal appends (atomic batches) the node issued.",
            None,
            c.journal_batches,
        )?;
        counter(
            e,
            "halyard_journal_append_records",
            "Records in those batches.",
            None,
            c.journal_entries,
        )?;
        counter(
            e,
            "halyard_bridge_records_out",
            "Kafka bridge: records written to Kafka with journal batches (Kafka journal) or put in the outbox (local journal).",
            None,
            c.bridge_records_out,
        )?;
        counter(
            e,
            "halyard_bridge_records_in",
            "Kafka bridge: record offsets read in (made messages, or skipped by the loop guard).",
            None,
            c.bridge_records_in,
        )?;
        counter(
            e,
            "halyard_bridge_loop_skipped",
            "Kafka bridge: records not read back in because this cluster wrote them.",
            None,
            c.bridge_loop_skipped,
        )?;
        counter(
            e,
            "halyard_bridge_outbox_forwarded",
            "Kafka bridge: outbox records Kafka acknowledged (local journal).",
            None,
            c.bridge_forwarded,
        )?;
        counter(
            e,
            "halyard_journal_failures",
            "Journal appends that failed.",
            None,
            c.journal_failures,
        )?;
        counter(
            e,
            "halyard_journal_written",
            "Key and value bytes of the journal records written.",
            Some(&Unit::Bytes),
            self.journal_bytes,
        )?;
        counter(
            e,
            "halyard_journal_group_commits",
            "Journal writes, each carrying one or more appends (local: one append and fsync; Kafka: one transaction).",
            None,
            self.group_commits,
        )?;
        {
            let mut m = e.encode_descriptor(
                "halyard_journal_group_commit_batches",
                "Appends (node batches) per group commit.",
                None,
                MetricType::Histogram,
            )?;
            let mut buckets: Vec<(f64, u64)> = GROUP_BATCH_BUCKETS
                .iter()
                .zip(&self.group_batches)
                .map(|(&b, &c)| (b as f64, c))
                .collect();
            buckets.push((
                f64::INFINITY,
                self.group_batches.last().copied().unwrap_or(0),
            ));
            m.encode_histogram::<NoLabelSet>(
                self.group_batches_sum as f64,
                self.group_commits,
                &buckets,
                None,
            )?;
        }
        micros_histogram(
            e,
            "halyard_journal_compaction_stall",
            "Pauses of the local journal's append loop for compaction work (deleting dead segments, cleaning): an append arriving during one waits at most that long.",
            &COMPACTION_STALL_BUCKETS_US,
            &self.compaction_stalls,
            self.compaction_stall_sum_us,
        )?;
        gauge(
            e,
            "halyard_journal_compaction_stall_max",
            "The longest pause of the local journal's append loop for compaction work since start.",
            Some(&Unit::Seconds),
            self.compaction_stall_max_us as f64 / 1e6,
        )?;
        micros_histogram(
            e,
            "halyard_journal_write",
            "Local journal group commits, from the write's start to fdatasync's return (a filled segment's fdatasync and the next one's creation included).",
            &WRITE_BUCKETS_US,
            &self.writes,
            self.write_sum_us,
        )?;
        gauge(
            e,
            "halyard_journal_write_max",
            "The longest local journal group commit (write and fdatasync) since start.",
            Some(&Unit::Seconds),
            self.write_max_us as f64 / 1e6,
        )?;
        counter(
            e,
            "halyard_journal_fsyncs",
            "fdatasync calls on local journal segments.",
            None,
            self.fsyncs,
        )?;
        counter(
            e,
            "halyard_kafka_transaction_commits",
            "Kafka journal transactions committed.",
            None,
            self.kafka_commits,
        )?;
        counter(
            e,
            "halyard_kafka_transaction_aborts",
            "Kafka journal transactions aborted after a failed write.",
            None,
            self.kafka_aborts,
        )?;
        if let Some(lag) = self.standby_lag_records {
            gauge(
                e,
                "halyard_standby_lag_records",
                "Records the hot standby copy of the Kafka journal is behind its end (only while following, on a backup).",
                None,
                lag as f64,
            )?;
        }
        if let Some(m) = &self.mirror {
            m.encode(e)?;
        }
        histogram(
            e,
            "halyard_journal_durable_latency",
            "From a journal append issued to the journal saying it is durable.",
            &c.journal_latency,
        )?;
        histogram(
            e,
            "halyard_send_receipt_latency",
            "From a send (outside a transaction) taken to its receipt (STOMP RECEIPT, AMQP accepted) due.",
            &c.send_receipt_latency,
        )?;
        gauge(
            e,
            "halyard_messages",
            "Messages held (each once, however many queues reference it).",
            None,
            s.messages as f64,
        )?;
        gauge(
            e,
            "halyard_queues",
            "Queues there are (the per-queue series list at most --metrics-max-queues of them, the fullest first).",
            None,
            s.queues_total as f64,
        )?;
        let per_queue: [PerQueue; 8] = [
            (
                "halyard_queue_messages",
                "Messages in the queue (ready, scheduled, delivered and not yet acknowledged).",
                MetricType::Gauge,
                |q| q.messages,
            ),
            (
                "halyard_queue_consumers",
                "Consumers attached to the queue.",
                MetricType::Gauge,
                |q| q.consumers,
            ),
            (
                "halyard_queue_messages_added",
                "Messages added to the queue since this node went live.",
                MetricType::Counter,
                |q| q.counters.added,
            ),
            (
                "halyard_queue_messages_delivered",
                "Deliveries to consumers (redeliveries included).",
                MetricType::Counter,
                |q| q.counters.delivered,
            ),
            (
                "halyard_queue_messages_redelivered",
                "Deliveries of a message already delivered from this queue before.",
                MetricType::Counter,
                |q| q.counters.redelivered,
            ),
            (
                "halyard_queue_messages_acknowledged",
                "Messages consumers settled for good (ack, accepted, auto-ack, commit).",
                MetricType::Counter,
                |q| q.counters.acknowledged,
            ),
            (
                "halyard_queue_messages_dead_lettered",
                "Messages moved to the dead-letter address.",
                MetricType::Counter,
                |q| q.counters.dead_lettered,
            ),
            (
                "halyard_queue_messages_expired",
                "Messages moved to the expiry address.",
                MetricType::Counter,
                |q| q.counters.expired,
            ),
        ];
        for (name, help, kind, get) in per_queue {
            family(
                e,
                name,
                help,
                kind,
                s.queues.iter().map(|q| (q_labels(q), get(q) as f64)),
            )?;
        }
        Ok(())
    }
}

impl MirrorSnapshot {
    fn encode(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let gauges = [
            (
                "halyard_mirror_unacknowledged_groups",
                "Journal groups of this broker's mirror stream some peer has not acknowledged (with --mirror-sync false: the window of loss).",
                self.unacknowledged_groups,
            ),
            (
                "halyard_mirror_outbox_groups",
                "Journal groups the mirror outbox keeps for peers that are behind or away.",
                self.outbox_groups,
            ),
            (
                "halyard_mirror_outbox_bytes",
                "Bytes of the journal groups the mirror outbox keeps.",
                self.outbox_bytes,
            ),
            (
                "halyard_mirror_peers_streaming",
                "Mirror peers whose link streams now.",
                self.peers_streaming,
            ),
            (
                "halyard_mirror_answers_held",
                "Durable answers (receipts to be) the sync gate holds for in-sync peers.",
                self.answers_held,
            ),
        ];
        for (name, help, v) in gauges {
            gauge(e, name, help, None, v as f64)?;
        }
        counter(
            e,
            "halyard_mirror_snapshots",
            "Journal snapshots sent to mirror peers that were not in the stream.",
            None,
            self.snapshots,
        )
    }
}
