//! The Kafka bridge's reader: while the node is live, reads the bridged
//! topics (`read_committed`, every partition, from the positions the
//! journal holds) and hands their records to the node, one batch per
//! partition at a time. The node journals each batch with the position it
//! reaches and answers `Ingested`; only then does the next batch of that
//! partition go. So the reader keeps no state that matters: a new live
//! starts it at the journaled positions, and a record is ingested once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use halyard_core::bridge::{
    BridgeConfig, BridgeEvent, BridgeRequest, InRecord, Position, RECORDS_PER_BATCH_MAX,
};
use halyard_core::node::Input;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::config::KafkaConfig;
use super::read::ReaderContext;

/// Records handed to the node in one batch at most.
const BATCH_RECORDS_MAX: usize = 1_000;
const _: () = assert!(BATCH_RECORDS_MAX <= RECORDS_PER_BATCH_MAX);
/// Records fetched and not yet handed over, per partition, before the
/// partition's fetching pauses.
const BUFFERED_PER_PARTITION_MAX: usize = 10_000;
/// How often the topic list is looked at (new topics, new partitions).
const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// After the node stopped a batch short (it was full), wait before reading on.
const RETRY_AFTER: Duration = Duration::from_secs(1);
const POLL_WAIT: Duration = Duration::from_millis(20);

/// Starts the reader's thread.
pub fn spawn_bridge_reader(
    kafka: KafkaConfig,
    bridge: BridgeConfig,
    inputs: mpsc::Sender<Input>,
    forwarder: Option<std_mpsc::Sender<BridgeRequest>>,
) -> crate::bridge::BridgeHandle {
    let (tx, rx) = std_mpsc::channel();
    thread::Builder::new()
        .name("halyard-bridge-reader".into())
        .spawn(move || run(kafka, bridge, rx, inputs))
        .expect("spawn bridge reader thread");
    crate::bridge::BridgeHandle::new(tx, forwarder)
}

type Tp = (String, u32);

/// One partition being read.
#[derive(Default)]
struct Partition {
    /// Offset of the next record to hand over.
    next: u64,
    buffered: Vec<InRecord>,
    /// A batch is with the node: its records end before this offset.
    in_flight: Option<u64>,
    paused: bool,
    /// Do not hand anything over before this (after a short batch).
    hold_until: Option<Instant>,
}

/// The reader while the node is live.
struct Live {
    consumer: BaseConsumer<ReaderContext>,
    /// Journaled positions at the start of this live period.
    positions: BTreeMap<Tp, u64>,
    subscribed: BTreeSet<String>,
    partitions: BTreeMap<Tp, Partition>,
    refreshed: Option<Instant>,
}

fn run(
    kafka: KafkaConfig,
    bridge: BridgeConfig,
    rx: std_mpsc::Receiver<BridgeRequest>,
    inputs: mpsc::Sender<Input>,
) {
    let mut live: Option<Live> = None;
    loop {
        let request = if live.is_some() {
            match rx.try_recv() {
                Ok(r) => Some(r),
                Err(std_mpsc::TryRecvError::Empty) => None,
                Err(std_mpsc::TryRecvError::Disconnected) => return,
            }
        } else {
            match rx.recv() {
                Ok(r) => Some(r),
                Err(_) => return,
            }
        };
        match request {
            Some(BridgeRequest::Start {
                positions,
                subscribed,
            }) => match new_consumer(&kafka) {
                Ok(consumer) => {
                    info!(positions = positions.len(), "Kafka bridge reader started");
                    live = Some(Live {
                        consumer,
                        positions: positions
                            .into_iter()
                            .map(|p| ((p.topic, p.partition), p.next_offset))
                            .collect(),
                        subscribed: subscribed.into_iter().collect(),
                        partitions: BTreeMap::new(),
                        refreshed: None,
                    });
                }
                Err(e) => {
                    warn!(error = %e, "Kafka bridge reader cannot start; nothing is read until the next activation")
                }
            },
            Some(BridgeRequest::Subscribed { addresses }) => {
                if let Some(l) = live.as_mut() {
                    l.subscribed = addresses.into_iter().collect();
                    l.refreshed = None;
                }
            }
            Some(BridgeRequest::Ingested(pos)) => {
                if let Some(l) = live.as_mut() {
                    l.ingested(pos);
                }
            }
            Some(BridgeRequest::Stop) if live.take().is_some() => {
                info!("Kafka bridge reader stopped");
            }
            Some(BridgeRequest::Stop) => {}
            // The forwarder's (the handle sends them there).
            Some(BridgeRequest::Forward { .. }) => {}
            None => {}
        }
        let Some(l) = live.as_mut() else {
            continue;
        };
        if l.refreshed.is_none_or(|t| t.elapsed() >= REFRESH_EVERY) {
            l.refresh(&kafka, &bridge);
        }
        l.poll();
        if !l.hand_over(&inputs) {
            return;
        }
    }
}

fn new_consumer(
    kafka: &KafkaConfig,
) -> Result<BaseConsumer<ReaderContext>, rdkafka::error::KafkaError> {
    kafka
        .client()
        .set("group.id", format!("halyard-{}-bridge", kafka.cluster_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "20")
        .create_with_context(ReaderContext)
}

impl Live {
    /// Looks at the topic list: reads every partition of every topic that
    /// is bridged in and wanted (its route reads always, or its address has
    /// subscriptions); stops reading the others.
    fn refresh(&mut self, kafka: &KafkaConfig, bridge: &BridgeConfig) {
        self.refreshed = Some(Instant::now());
        let md = match self.consumer.fetch_metadata(None, kafka.timeout()) {
            Ok(md) => md,
            Err(e) => {
                warn!(error = %e, "Kafka bridge reader cannot list topics");
                return;
            }
        };
        let mut wanted: BTreeSet<Tp> = BTreeSet::new();
        for t in md.topics() {
            let Some(m) = bridge.inbound(t.name()) else {
                continue;
            };
            if !m.settings.consume_always && !self.subscribed.contains(&m.address) {
                continue;
            }
            for p in t.partitions() {
                wanted.insert((t.name().to_string(), p.id() as u32));
            }
        }
        let have: BTreeSet<Tp> = self.partitions.keys().cloned().collect();
        if wanted == have {
            return;
        }
        for gone in have.difference(&wanted) {
            debug!(topic = %gone.0, partition = gone.1, "Kafka bridge stops reading");
            self.partitions.remove(gone);
        }
        let mut tpl = TopicPartitionList::new();
        for tp in &wanted {
            let known = self
                .partitions
                .get(tp)
                .map(|p| p.next)
                .or_else(|| self.positions.get(tp).copied());
            let offset = match known {
                Some(o) => Offset::Offset(o as i64),
                None => Offset::Beginning,
            };
            if !self.partitions.contains_key(tp) {
                info!(topic = %tp.0, partition = tp.1, ?offset, "Kafka bridge reads partition");
                self.partitions.insert(
                    tp.clone(),
                    Partition {
                        next: known.unwrap_or(0),
                        ..Partition::default()
                    },
                );
            }
            // Buffered records are dropped: reading resumes after what was
            // handed over.
            let p = self.partitions.get_mut(tp).expect("just inserted");
            p.buffered.clear();
            p.paused = false;
            let at = match (p.in_flight, known) {
                (Some(end), _) => Offset::Offset(end as i64),
                (None, Some(o)) => Offset::Offset(o as i64),
                (None, None) => Offset::Beginning,
            };
            let _ = tpl.add_partition_offset(&tp.0, tp.1 as i32, at);
        }
        if let Err(e) = self.consumer.assign(&tpl) {
            warn!(error = %e, "Kafka bridge reader cannot assign partitions");
            self.refreshed = None;
        }
    }

    /// Fetches what is there (for at most `POLL_WAIT`).
    fn poll(&mut self) {
        let deadline = Instant::now() + POLL_WAIT;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Some(res) = self.consumer.poll(wait) else {
                return;
            };
            let m = match res {
                Ok(m) => m,
                Err(e) => {
                    debug!(error = %e, "Kafka bridge reader poll");
                    return;
                }
            };
            let tp = (m.topic().to_string(), m.partition() as u32);
            let Some(p) = self.partitions.get_mut(&tp) else {
                continue;
            };
            let offset = m.offset() as u64;
            let expected = p
                .buffered
                .last()
                .map_or(p.in_flight.unwrap_or(p.next), |r| r.offset + 1);
            if offset < expected {
                continue; // read again after a seek: already held or handed over
            }
            let headers = m.headers().map_or_else(Vec::new, |hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            Bytes::copy_from_slice(h.value.unwrap_or_default()),
                        )
                    })
                    .collect()
            });
            p.buffered.push(InRecord {
                offset,
                key: m.key().map(Bytes::copy_from_slice),
                value: m.payload().map(Bytes::copy_from_slice),
                headers,
                timestamp_ms: m.timestamp().to_millis(),
            });
            if p.buffered.len() >= BUFFERED_PER_PARTITION_MAX && !p.paused {
                p.paused = true;
                let mut tpl = TopicPartitionList::new();
                let _ = tpl.add_partition(&tp.0, tp.1 as i32);
                let _ = self.consumer.pause(&tpl);
            }
            if Instant::now() >= deadline {
                return;
            }
        }
    }

    /// Hands one batch per idle partition to the node. False once the node
    /// is gone.
    fn hand_over(&mut self, inputs: &mpsc::Sender<Input>) -> bool {
        let now = Instant::now();
        for ((topic, partition), p) in self.partitions.iter_mut() {
            if p.in_flight.is_some() || p.buffered.is_empty() {
                continue;
            }
            if p.hold_until.is_some_and(|t| now < t) {
                continue;
            }
            let n = p.buffered.len().min(BATCH_RECORDS_MAX);
            let records: Vec<InRecord> = p.buffered.drain(..n).collect();
            let end = records.last().map_or(p.next, |r| r.offset + 1);
            p.in_flight = Some(end);
            if p.paused && p.buffered.len() < BUFFERED_PER_PARTITION_MAX / 2 {
                p.paused = false;
                let mut tpl = TopicPartitionList::new();
                let _ = tpl.add_partition(topic, *partition as i32);
                let _ = self.consumer.resume(&tpl);
            }
            let ev = BridgeEvent::Records {
                topic: topic.clone(),
                partition: *partition,
                records,
            };
            if inputs.blocking_send(Input::Bridge(ev)).is_err() {
                return false;
            }
        }
        true
    }

    /// The node journaled a batch: the partition may go on. If the node
    /// stopped short of the batch's end, read again from where it stopped.
    fn ingested(&mut self, pos: Position) {
        let tp = (pos.topic, pos.partition);
        let Some(p) = self.partitions.get_mut(&tp) else {
            return;
        };
        let Some(end) = p.in_flight.take() else {
            return;
        };
        p.next = pos.next_offset;
        if pos.next_offset < end {
            warn!(topic = %tp.0, partition = tp.1, at = pos.next_offset, "Kafka bridge: the node took part of a batch; reading again from there");
            p.buffered.clear();
            p.hold_until = Some(Instant::now() + RETRY_AFTER);
            let at = Offset::Offset(pos.next_offset as i64);
            if let Err(e) = self
                .consumer
                .seek(&tp.0, tp.1 as i32, at, Duration::from_secs(5))
            {
                // Re-assigning at the node's position (the refresh) seeks back.
                warn!(error = %e, "Kafka bridge reader cannot seek; re-assigning");
                self.partitions.remove(&tp);
                self.positions.insert(tp, pos.next_offset);
                self.refreshed = None;
            }
        }
    }
}
